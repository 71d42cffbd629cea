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
    - Only with O(config) (not part of the fact). ufw - C({ipv6, default_input_policy, rules}), rules as parsed from the tuple lines of
      ufw's user rules (action, proto, dport, dst, sport, src, direction, interface, app, family, comment);
      firewalld - C({zone, target, rich_rules}) of the zone's permanent configuration.
  returned: when O(config) is not empty
  type: dict
  sample: {ufw: {ipv6: true, default_input_policy: DROP, rules: []}}
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

import os
import re

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cosyvoice.deploy.plugins.module_utils import firewall_firewalld as fwd
from ansible_collections.cosyvoice.deploy.plugins.module_utils import firewall_ufw as ufw
from ansible_collections.cosyvoice.deploy.plugins.module_utils.firewall_nft import NftRuleset
from ansible_collections.cosyvoice.deploy.plugins.module_utils.firewall_status import Probes, host_status

C_LOCALE = {"LC_ALL": "C", "LANG": "C"}
UFW_RULE_FILES = ("/etc/ufw/user.rules", "/etc/ufw/user6.rules")
UFW_DEFAULTS = "/etc/default/ufw"
# family -> (the kernel's list of legacy tables, the tool that prints them)
LEGACY = {
    "ipv4": ("/proc/net/ip_tables_names", "iptables-legacy-save"),
    "ipv6": ("/proc/net/ip6_tables_names", "ip6tables-legacy-save"),
}
NFT_COMPAT = {"ipv4": "iptables-nft-save", "ipv6": "ip6tables-nft-save"}
_DEV = re.compile(r"\bdev\s+(\S+)")


class Host:
    """Commands and files of the host; tests give it a fake module and a directory as root."""

    def __init__(self, module, root="/"):
        self.module = module
        self.root = root

    def which(self, name):
        return self.module.get_bin_path(name)

    def run(self, argv):
        """(rc, stdout); commands never go through a shell."""
        rc, out, _err = self.module.run_command(argv, environ_update=C_LOCALE)
        return rc, out or ""

    def read(self, path):
        try:
            with open(os.path.join(self.root, path.lstrip("/")), encoding="utf-8", errors="replace") as handle:
                return handle.read()
        except OSError:
            return None

    def is_root(self):
        return os.geteuid() == 0


# --------------------------------------------------------------------------
# Probes
# --------------------------------------------------------------------------
def unit_state(host, unit):
    """`systemctl is-active UNIT`: active, inactive, failed, ... ('unknown' without systemctl)."""
    systemctl = host.which("systemctl")
    if not systemctl:
        return "unknown"
    out = host.run([systemctl, "is-active", unit])[1].strip()
    return out.splitlines()[0] if out else "unknown"


def firewalld_zone_in_force(host, cmd):
    """The zone of the default route's interface, else firewalld's default zone."""
    ip = host.which("ip")
    found = _DEV.search(host.run([ip, "route", "show", "default"])[1]) if ip else None
    if found:
        rc, out = host.run([cmd, f"--get-zone-of-interface={found.group(1)}"])
        if rc == 0 and out.strip():
            return out.strip()
    return host.run([cmd, "--get-default-zone"])[1].strip()


def probe_firewalld(host, probes):
    """The running zone's listing and the services it uses (runtime configuration)."""
    cmd = host.which("firewall-cmd")
    if not probes.firewalld_active or not cmd:
        return
    zone = firewalld_zone_in_force(host, cmd)
    probes.firewalld_zone = host.run([cmd, f"--zone={zone}", "--list-all"])[1]
    parsed = fwd.parse_zone(probes.firewalld_zone)
    known = set(host.run([cmd, "--get-services"])[1].split())
    for name in fwd.referenced_services(parsed) if parsed else []:
        if name in known:
            probes.firewalld_services[name] = host.run([cmd, f"--info-service={name}"])[1]


def probe_ufw(host, probes):
    """`ufw status verbose` and the user rules; 'absent', 'active' or 'inactive'."""
    cmd = host.which("ufw")
    if not cmd:
        return "absent"
    probes.ufw_status = host.run([cmd, "status", "verbose"])[1]
    probes.ufw_rules = "".join(host.read(path) or "" for path in UFW_RULE_FILES)
    return "active" if ufw.parse_status(probes.ufw_status).active else "inactive"


def read_iptables_nft(host, probes):
    """iptables-nft-save / ip6tables-nft-save: the nf_tables rules as iptables text."""
    for family, tool in NFT_COMPAT.items():
        path = host.which(tool)
        rc, text = host.run([path]) if path else (1, "")
        if rc == 0:
            probes.iptables_nft[family] = text


def probe_nft(host, probes):
    """`nft -j list ruleset` (and iptables-nft-save where it holds xt rules): 'read', 'absent' or 'failed'.

    Without the nft tool, iptables-nft-save is the view of the same rules."""
    cmd = host.which("nft")
    if not cmd:
        read_iptables_nft(host, probes)
        return "absent"
    rc, out = host.run([cmd, "-j", "list", "ruleset"])
    if rc != 0:
        return "failed"
    probes.nft_json = out
    if '"xt"' in out:
        read_iptables_nft(host, probes)
    return "read"


def probe_legacy(host, probes):
    """Legacy iptables, only where the kernel has legacy tables (reading them loads no module)."""
    for family, (names, tool) in LEGACY.items():
        path = host.which(tool)
        if not (host.read(names) or "").strip() or not path:
            continue
        rc, out = host.run([path])
        if rc == 0:
            probes.iptables_legacy[family] = out


def gather(host):
    """(Probes, managers, sources) of the host."""
    probes = Probes(root=host.is_root())
    managers = {"firewalld": unit_state(host, "firewalld.service")}
    probes.firewalld_active = managers["firewalld"] == "active"
    managers["ufw"] = probe_ufw(host, probes)
    managers["nftables_service"] = unit_state(host, "nftables.service")
    sources = {"nft": "absent", "iptables_legacy": {}, "iptables_nft": {}}
    if probes.root:
        probe_firewalld(host, probes)
        sources["nft"] = probe_nft(host, probes)
        probe_legacy(host, probes)
    ruleset = NftRuleset.from_json(probes.nft_json) if probes.nft_json else None
    managers["nftables_table"] = "present" if ruleset and ruleset.managed() else "absent"
    sources["iptables_legacy"] = {family: family in probes.iptables_legacy for family in LEGACY}
    sources["iptables_nft"] = {family: family in probes.iptables_nft for family in NFT_COMPAT}
    return probes, managers, sources


# --------------------------------------------------------------------------
# Configuration the role's tasks read
# --------------------------------------------------------------------------
def ufw_config(host, probes):
    rules = probes.ufw_rules
    if rules is None:
        rules = "".join(host.read(path) or "" for path in UFW_RULE_FILES)
    defaults = host.read(UFW_DEFAULTS)
    return {"ipv6": ufw.ipv6_enabled(defaults), "default_input_policy": ufw.default_input_policy(defaults),
            "rules": ufw.ufw_tuples(rules)}


def firewalld_config(host, zone):
    """The permanent target and rich rules of `zone` (default: the default zone); None when unreadable."""
    cmd = host.which("firewall-offline-cmd")
    if not cmd:
        return None
    if not zone:
        rc, out = host.run([cmd, "--get-default-zone"])
        zone = out.strip() if rc == 0 else ""
    target = host.run([cmd, f"--zone={zone}", "--get-target"]) if zone else (1, "")
    rich = host.run([cmd, f"--zone={zone}", "--list-rich-rules"]) if zone else (1, "")
    if target[0] != 0 or rich[0] != 0:
        return None
    return {"zone": zone, "target": target[1].strip(), "rich_rules": [r for r in rich[1].splitlines() if r.strip()]}


def session_ssh_connection(proc="/proc"):
    """$SSH_CONNECTION of the SSH session this module runs under: its own environment, else that of the
    nearest ancestor process that has it (become - sudo, su - resets the environment, the processes it
    started from still hold it). "" when no ancestor has it (not run over SSH); None when an ancestor's
    environment cannot be read (not root): ask the login shell instead."""
    if os.environ.get("SSH_CONNECTION"):
        return os.environ["SSH_CONNECTION"]
    pid = os.getppid()
    for _ in range(32):
        if pid <= 1:
            return ""
        try:
            with open(f"{proc}/{pid}/environ", "rb") as handle:
                env = handle.read().split(b"\0")
            with open(f"{proc}/{pid}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            return None
        for item in env:
            if item.startswith(b"SSH_CONNECTION="):
                return item.split(b"=", 1)[1].decode("ascii", "replace")
        # stat: "pid (comm) state ppid ..."; comm may hold spaces and parentheses.
        pid = int(stat[stat.rindex(b")") + 2:].split()[1])
    return ""


def ssh_ports(params, connection=None):
    ports = list(params["ssh_ports"] or [])
    connection = (connection if connection is not None else os.environ.get("SSH_CONNECTION", "")).split()
    if len(connection) == 4 and connection[3].isdigit() and int(connection[3]) not in ports:
        ports.append(int(connection[3]))
    return ports


def main():
    module = AnsibleModule(
        argument_spec={
            "ports": {
                "type": "list",
                "elements": "dict",
                "default": [],
                "options": {
                    "port": {"type": "int", "required": True},
                    "proto": {"type": "str", "choices": ["tcp", "udp"], "default": "tcp"},
                    "purpose": {"type": "str"},
                },
            },
            "ssh_ports": {"type": "list", "elements": "int", "default": [22]},
            "config": {"type": "list", "elements": "str", "choices": ["ufw", "firewalld"], "default": []},
            "firewalld_zone": {"type": "str", "default": ""},
        },
        supports_check_mode=True,
    )
    bad = [entry["port"] for entry in module.params["ports"] if not 1 <= entry["port"] <= 65535]
    if bad:
        module.fail_json(msg=f"ports: {bad} are not port numbers (1-65535).")
    host = Host(module)
    probes, managers, sources = gather(host)
    connection = session_ssh_connection()
    facts = host_status(probes, module.params["ports"], ssh_ports(module.params, connection))
    facts.update(managers=managers, sources=sources)
    result = {"changed": False, "ansible_facts": {"os_firewall": facts}, "ssh_connection": connection}
    if module.params["config"]:
        result["config"] = read_config(module, host, probes)
    module.exit_json(**result)


def read_config(module, host, probes):
    config = {}
    if "ufw" in module.params["config"]:
        config["ufw"] = ufw_config(host, probes)
    if "firewalld" in module.params["config"]:
        config["firewalld"] = firewalld_config(host, module.params["firewalld_zone"])
        if config["firewalld"] is None:
            zone = module.params["firewalld_zone"] or "the default zone"
            module.fail_json(
                msg=f"Could not read the permanent configuration of firewalld zone {zone} "
                "with firewall-offline-cmd (is firewalld installed?)."
            )
    return config


if __name__ == "__main__":
    main()
