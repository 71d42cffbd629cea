#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cosyvoice-deploy maintainers
# Apache License 2.0
"""Several layers' first reads of a host in one module run: package_state's reads (one per layer), the
firewall's read (os_firewall_facts), the PCI bus (nvidia_driver's detection). Read-only."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: host_read
short_description: Read the host for several layers in one module run (read-only)
description:
  - Runs, in one module run, the reads that roles would otherwise make in module runs of their own, and
    returns each under its own key, exactly as the module named below returns it.
  - C(playbooks/preflight.yml) takes the reads of the cosyvoice, nginx_proxy and os_firewall layers and the
    PCI scan of nvidia_driver here once every layer's input is validated; each layer uses its part instead
    of reading the host again (a layer run alone, or after a reboot, reads its own part with this module).
  - Changes nothing; the same answers as M(cosyvoice.deploy.package_state) and
    M(cosyvoice.deploy.os_firewall_facts), with the same readers (C(module_utils)). Secrets among the options
    (O(package_state[].stat.key), the passwords in O(package_state[].htpasswd.users)) are never returned.
version_added: "1.15.0"
author: cosyvoice-deploy maintainers
options:
  package_state:
    description:
      - One read per layer. Each item takes the options of M(cosyvoice.deploy.package_state) (C(names) is
        required; pass an empty list for none) and C(layer), the key its answer is returned under.
    type: list
    elements: dict
    default: []
  os_firewall:
    description:
      - The options of M(cosyvoice.deploy.os_firewall_facts); its answer is returned as RV(os_firewall).
    type: dict
  pci:
    description:
      - Scan the PCI bus as the nvidia_driver role does (C(lspci -Dnn), or sysfs without pciutils).
    type: bool
    default: false
notes:
  - Supports check mode (it only reads).
"""

EXAMPLES = r"""
- name: Read the host for the layers that follow
  cosyvoice.deploy.host_read:
    package_state:
      - layer: nginx_proxy
        names: [nginx]
        services: [nginx.service]
    os_firewall:
      ports: [{port: 443, proto: tcp}]
      config: [ufw]
    pci: true
  register: __site_host_read
  check_mode: false
"""

RETURN = r"""
package_state:
  description: Each item's answer, as package_state returns it, under the item's C(layer).
  returned: always
  type: dict
  sample: {nginx_proxy: {missing: [], tool: dpkg-query, services: {nginx.service: {active: active, enabled: enabled}}}}
os_firewall:
  description:
    - The firewall's answer as os_firewall_facts returns it (C(ansible_facts.os_firewall), C(ssh_connection),
      C(config), C(packages)); here it is data in the result, not a fact set on the host.
  returned: when O(os_firewall) is given
  type: dict
pci:
  description: "The PCI scan's text; its last line names the source: C(# pci-scan: lspci) or C(# pci-scan: sysfs)."
  returned: when O(pci) is true
  type: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.cosyvoice.deploy.plugins.module_utils.firewall_host import OS_FIREWALL_FACTS_SPEC, read_firewall
from ansible_collections.cosyvoice.deploy.plugins.module_utils.package_read import PACKAGE_STATE_SPEC, read_packages
from ansible_collections.cosyvoice.deploy.plugins.module_utils.pci import scan_pci

SPEC = {
    "package_state": {"type": "list", "elements": "dict", "default": [],
                      "options": {"layer": {"type": "str", "required": True}, **PACKAGE_STATE_SPEC}},
    "os_firewall": {"type": "dict", "options": OS_FIREWALL_FACTS_SPEC},
    "pci": {"type": "bool", "default": False},
}


def main() -> None:
    module = AnsibleModule(argument_spec=SPEC, supports_check_mode=True)
    layers = [item["layer"] for item in module.params["package_state"]]
    twice = sorted({layer for layer in layers if layers.count(layer) > 1})
    if twice:
        module.fail_json(msg=f"package_state: each layer once; {twice} given more than once.")
    result = {"changed": False,
              "package_state": {item["layer"]: read_packages(module, item, where=f"package_state[{item['layer']}]: ")
                                for item in module.params["package_state"]}}
    if module.params["os_firewall"]:
        result["os_firewall"] = read_firewall(module, module.params["os_firewall"], where="os_firewall: ")
    if module.params["pci"]:
        result["pci"] = scan_pci(module)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
