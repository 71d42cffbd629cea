#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cosyvoice-deploy maintainers
# Apache License 2.0
"""Module os_firewall_facts: the host firewall, read-only, as the fact os_firewall."""

from __future__ import annotations

DOCUMENTATION = r"""
module: os_firewall_facts
author: cosyvoice-deploy maintainers
short_description: Read the host firewall and whether given ports can be reached
description:
  - Reads, without changing anything, which firewall manager is in charge (firewalld if it runs, else ufw
    if active, else the nftables ruleset, else legacy iptables, else none) and evaluates, for each port in
    O(ports), whether a new connection from an unknown outside source would be let in, over IPv4 and IPv6.
  - Reads the kernel's WHOLE packet filter, not only the managed backend - every nftables base chain on the
    input hook (C(nft -j list ruleset); this includes rules that iptables-nft writes, for example with
    C(iptables -I INPUT ...)), and legacy iptables (C(iptables-legacy-save), C(ip6tables-legacy-save)) where
    legacy tables exist. Rules that ufw, firewalld or the os_firewall role did not write, and that drop or reject
    one of O(ports), are listed in RV(ansible_facts.os_firewall.foreign_blocks) with a command that removes
    exactly that rule; such a rule also decides the port's verdict (a port ufw allows but a foreign rule drops
    first is not reachable).
  - Runs each probe as a plain command (no shell), with C(LC_ALL=C). Commands and files that are absent are
    skipped. Needs root (C(become) true) for ufw, nftables and iptables; without it the backend is C(unknown).
  - Sets the fact C(os_firewall) (reach it as C(ansible_facts['os_firewall'])).
options:
  ports:
    description:
      - Ports to evaluate, as the role's port lists give them. Other keys than these are not accepted.
    type: list
    elements: dict
    default: []
    suboptions:
      port:
        description: Port number, 1-65535.
        type: int
        required: true
      proto:
        description: Transport protocol.
        type: str
        choices: [tcp, udp]
        default: tcp
      purpose:
        description: Free text, ignored.
        type: str
  ssh_ports:
    description:
      - TCP ports of SSH. No foreign rule is ever proposed for removal for these ports, and a foreign rule
        that also matches traffic to them is reported with RV(ansible_facts.os_firewall.foreign_blocks[].remove_command)
        null. The port of the SSH connection the module runs under (RV(ssh_connection)) is added.
    type: list
    elements: int
    default: [22]
  config:
    description:
      - Also read the configuration the role's tasks need (into RV(config), not into the fact).
      - C(ufw) - the tuple lines (ufw's own record of each user rule) of C(/etc/ufw/user.rules) and
        C(user6.rules), and C(IPV6=) and C(DEFAULT_INPUT_POLICY=) of C(/etc/default/ufw).
      - C(firewalld) - the permanent target and rich rules of O(firewalld_zone), read with
        C(firewall-offline-cmd) (works while firewalld is stopped or masked). The module fails when that
        cannot be read.
    type: list
    elements: str
    choices: [ufw, firewalld]
    default: []
  firewalld_zone:
    description: The zone for O(config=firewalld); empty means firewalld's default zone.
    type: str
    default: ""
  packages:
    description:
      - Package names (no versions) to look up in the same run, in one C(dpkg-query) or C(rpm -q) (as
        M(cosyvoice.deploy.package_state) does); the answer is RV(packages). The role passes every backend's
        packages, since the backend is chosen from this module's answer.
    type: list
    elements: str
    default: []
attributes:
  check_mode:
    description: Reads only; runs the same in check mode.
    support: full
  diff_mode:
    description: Nothing changes, so there is no diff.
    support: none
notes:
  - What is modelled - ufw user rules and default policy; a firewalld zone (deny rich rules, ports,
    protocols, services, accept rich rules, target) of the default route's interface, else the default zone;
    nftables matches on ports, addresses, interfaces, l4proto, ct state, sets, jumps, gotos; iptables matches
    C(-p -s -d -i), C(--dport(s)), C(--ctstate)/C(--state), C(--syn), comment, and match modules that depend
    on the source (limit, recent, set, ...). Matches that nft's JSON shows only as C(xt) are classified from
    C(iptables-nft-save). Anything else makes the port's answer C(unknown) rather than a guess.
  - Only the input hook is evaluated (not prerouting, not forwarding to containers).
seealso:
  - name: os_firewall role README
    description: The role that writes the rules this module reads, and the fact os_firewall_state.
    link: https://github.com/cosyvoice-deploy/cosyvoice-deploy/blob/main/roles/os_firewall/README.md
"""

EXAMPLES = r"""
- name: Read the host firewall for the service port
  cosyvoice.deploy.os_firewall_facts:
    ports:
      - {port: 7860, proto: tcp}
  become: true

- name: Show what blocks it
  ansible.builtin.debug:
    msg: "{{ ansible_facts['os_firewall']['foreign_blocks'] | map(attribute='remove_command') | list }}"

- name: Read ufw's user rules for the role's tasks
  cosyvoice.deploy.os_firewall_facts:
    config: [ufw]
  register: ufw_state
"""

RETURN = r"""
ssh_connection:
  description:
    - C($SSH_CONNECTION) of the SSH session the module runs under, read from the nearest ancestor process that
      has it when C(become) reset the environment; V("") when none has it (not over SSH), null when the
      ancestors' environments cannot be read (not root).
  returned: always
  type: str
  sample: 192.0.2.10 51234 192.0.2.20 22
config:
  description:
    - Only with O(config) (not part of the fact). ufw - C({ipv6, default_input_policy, rules, service}), rules as parsed from the tuple lines of
      ufw's user rules (action, proto, dport, dst, sport, src, direction, interface, app, family, comment), service what
      C(systemctl is-enabled ufw.service) says (enabled, disabled, ...; unknown without systemctl);
      firewalld - C({zone, target, rich_rules}) of the zone's permanent configuration.
  returned: when O(config) is not empty
  type: dict
  sample: {ufw: {ipv6: true, default_input_policy: DROP, rules: [], service: enabled}}
packages:
  description:
    - Only with O(packages). C(missing) - the names of O(packages) that are not fully installed, in the order
      given; C(tool) - what was asked (dpkg-query or rpm; none when neither exists, and every name is missing).
  returned: when O(packages) is not empty
  type: dict
  sample: {missing: [firewalld, python3-firewall], tool: dpkg-query}
ansible_facts:
  description: The fact os_firewall.
  returned: always
  type: dict
  contains:
    os_firewall:
      description: The host firewall, and each requested port's verdict.
      returned: always
      type: dict
      contains:
        backend:
          description: The manager in charge - ufw, firewalld, nftables, iptables (legacy only), none, or unknown (no root).
          type: str
          sample: ufw
        active:
          description: Whether the backend filters incoming traffic; null when it cannot be read.
          type: bool
          sample: true
        managed:
          description: Rules labelled by the os_firewall role were found.
          type: bool
          sample: true
        default_incoming:
          description: The backend's default for incoming traffic, in its own words (deny, reject, drop, allow); null when unknown.
          type: str
          sample: deny
        allowed_ports:
          description: The requested ports that are allowed (from every or from some sources).
          type: list
          elements: dict
          sample: [{port: 7860, proto: tcp}]
        ports:
          description:
            - One entry per requested port - allowed (true, false, null when it cannot be told), scope (any, some,
              none, unknown), the scope per address family, and a reason that names the backend and, when one
              decides, the foreign rule.
          type: list
          elements: dict
          sample:
            - port: 7860
              proto: tcp
              allowed: false
              scope: none
              families: {ipv4: none, ipv6: any}
              reason: "ufw (default incoming: deny); dropped by a rule that ufw did not write: nft ip filter INPUT handle 12: tcp dport 7860 drop"
        foreign_blocks:
          description:
            - Rules that no known firewall manager wrote (not ufw's chains, not firewalld's tables, not the role's
              table inet os_firewall) and that drop or reject some (match some) or all (match all) of the traffic
              to a requested port, once per port, protocol and address family. Never for O(ssh_ports).
            - source is nft or iptables-legacy; handle is nft's rule handle (null for legacy iptables); position is
              the rule's place in its chain; remove_command deletes exactly that rule, and is null (with
              kept_because) when the rule also matches SSH traffic.
          type: list
          elements: dict
          sample:
            - port: 7860
              proto: tcp
              family: ipv4
              source: nft
              table_family: ip
              table: filter
              chain: INPUT
              handle: 12
              position: 1
              rule: tcp dport 7860 drop
              verdict: drop
              match: all
              remove_command: nft delete rule ip filter INPUT handle 12
              kept_because: null
        posture:
          description:
            - firewall_active - anything filters incoming traffic (the backend, or any foreign rule); null without root.
            - default_incoming - deny, drop, reject, allow or unknown.
          type: dict
          sample: {firewall_active: true, default_incoming: deny, backend: ufw}
        managers:
          description:
            - State of each firewall manager as the role's detection needs it - firewalld and nftables_service as
              C(systemctl is-active) says, ufw active, inactive or absent, nftables_table present or absent (the
              role's table inet os_firewall).
          type: dict
          sample: {firewalld: inactive, ufw: active, nftables_service: inactive, nftables_table: absent}
        sources:
          description: Which parts of the kernel's filter were read - nft (read, absent, failed) and legacy iptables per family.
          type: dict
          sample: {nft: read, iptables_legacy: {ipv4: false, ipv6: false}, iptables_nft: {ipv4: true, ipv6: true}}
"""

import os  # noqa: F401  (tests patch os.getppid through this module)

from ansible.module_utils.basic import AnsibleModule

# The readers live in module_utils (host_probe reads the firewall with them too);
# the names are imported here for this module's main() and its unit tests.
from ansible_collections.cosyvoice.deploy.plugins.module_utils.firewall_host import (  # noqa: F401
    C_LOCALE,
    OS_FIREWALL_FACTS_SPEC,
    SSH_PORTS_SPEC,
    Host,
    bad_ports,
    firewalld_config,
    gather,
    read_firewall,
    read_state,
    session_ssh_connection,
    ssh_ports,
    ufw_config,
)
from ansible_collections.cosyvoice.deploy.plugins.module_utils.firewall_status import Probes, host_status  # noqa: F401


def main():
    module = AnsibleModule(argument_spec=OS_FIREWALL_FACTS_SPEC, supports_check_mode=True)
    # Host as this module names it (the tests replace it here).
    module.exit_json(changed=False, **read_firewall(module, module.params, Host))


if __name__ == "__main__":
    main()
