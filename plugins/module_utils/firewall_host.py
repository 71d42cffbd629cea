# -*- coding: utf-8 -*-
# Copyright: cosyvoice-deploy maintainers
# Apache License 2.0
"""Reading the host's firewall: the probes behind the fact os_firewall.

Used by the module os_firewall_facts (the os_firewall role's reads) and by the
module host_probe (the verify role reads the packet filter in the same module
run as its other evidence). Commands never go through a shell; nothing is
changed.
"""

from __future__ import annotations

import os
import re

from ansible_collections.cosyvoice.deploy.plugins.module_utils import firewall_firewalld as fwd
from ansible_collections.cosyvoice.deploy.plugins.module_utils import firewall_ufw as ufw
from ansible_collections.cosyvoice.deploy.plugins.module_utils import netshape
from ansible_collections.cosyvoice.deploy.plugins.module_utils.firewall_nft import NftRuleset
from ansible_collections.cosyvoice.deploy.plugins.module_utils.firewall_status import Probes, host_status
from ansible_collections.cosyvoice.deploy.plugins.module_utils.packages import bad_names, missing_packages

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

# The argument spec of the SSH ports (os_firewall_facts, host_probe's firewall; the
# ports to judge are netshape.PORTS_SPEC).
SSH_PORTS_SPEC = {"type": "list", "elements": "int", "default": [22]}


def bad_ports(ports):
    """The port numbers in `ports` (entries of netshape.PORTS_SPEC) outside 1-65535."""
    return [entry["port"] for entry in ports if not 1 <= entry["port"] <= 65535]


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
def systemctl_says(host, verb, unit):
    """The first word line of `systemctl VERB UNIT` (is-active, is-enabled); 'unknown' without systemctl."""
    systemctl = host.which("systemctl")
    if not systemctl:
        return "unknown"
    out = host.run([systemctl, verb, unit])[1].strip()
    return out.splitlines()[0] if out else "unknown"


def unit_state(host, unit):
    """`systemctl is-active UNIT`: active, inactive, failed, ... ('unknown' without systemctl)."""
    return systemctl_says(host, "is-active", unit)


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
def unit_file_state(host, unit):
    """`systemctl is-enabled UNIT`: enabled, disabled, masked, static, not-found, ... ('unknown' without systemctl)."""
    return systemctl_says(host, "is-enabled", unit)


def ufw_config(host, probes):
    rules = probes.ufw_rules
    if rules is None:
        rules = "".join(host.read(path) or "" for path in UFW_RULE_FILES)
    defaults = host.read(UFW_DEFAULTS)
    return {"ipv6": ufw.ipv6_enabled(defaults), "default_input_policy": ufw.default_input_policy(defaults),
            "rules": ufw.ufw_tuples(rules), "service": unit_file_state(host, "ufw.service")}


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


def read_state(host, ports, admin_ports):
    """(the fact os_firewall, the Probes read, $SSH_CONNECTION of this session) for `ports`.

    admin_ports: the ports never to be reported as removable (SSH); the port of this
    SSH session is added."""
    probes, managers, sources = gather(host)
    connection = session_ssh_connection()
    facts = host_status(probes, ports, ssh_ports({"ssh_ports": admin_ports}, connection))
    facts.update(managers=managers, sources=sources)
    return facts, probes, connection


# --------------------------------------------------------------------------
# os_firewall_facts' answer (module host_read runs it beside other reads)
# --------------------------------------------------------------------------
OS_FIREWALL_FACTS_SPEC = {
    "ports": netshape.PORTS_SPEC,
    "ssh_ports": SSH_PORTS_SPEC,
    "config": {"type": "list", "elements": "str", "choices": ["ufw", "firewalld"], "default": []},
    "firewalld_zone": {"type": "str", "default": ""},
    "packages": {"type": "list", "elements": "str", "default": []},
}


def read_firewall(module, params, host_factory=None, where=""):
    """os_firewall_facts' answer for `params` (validated by OS_FIREWALL_FACTS_SPEC): {ansible_facts: {os_firewall},
    ssh_connection, config?, packages?}; fails the module on bad input (`where` prefixes the message)."""
    bad = bad_ports(params["ports"])
    if bad:
        module.fail_json(msg=f"{where}ports: {bad} are not port numbers (1-65535).")
    bad = bad_names(params["packages"])
    if bad:
        module.fail_json(msg=f"{where}packages must be plain package names without versions: {bad}")
    host = (host_factory or Host)(module)
    facts, probes, connection = read_state(host, params["ports"], params["ssh_ports"])
    result = {"ansible_facts": {"os_firewall": facts}, "ssh_connection": connection}
    if params["config"]:
        result["config"] = read_config(module, host, probes, params, where)
    if params["packages"]:
        missing, tool = missing_packages(module, params["packages"])
        result["packages"] = {"missing": missing, "tool": tool}
    return result


def read_config(module, host, probes, params, where=""):
    config = {}
    if "ufw" in params["config"]:
        config["ufw"] = ufw_config(host, probes)
    if "firewalld" in params["config"]:
        config["firewalld"] = firewalld_config(host, params["firewalld_zone"])
        if config["firewalld"] is None:
            zone = params["firewalld_zone"] or "the default zone"
            module.fail_json(
                msg=f"{where}Could not read the permanent configuration of firewalld zone {zone} "
                "with firewall-offline-cmd (is firewalld installed?)."
            )
    return config
