"""Filters of the `os_firewall` role: input checks, the rules the role writes, thin readers.

Input checks (used by `roles/os_firewall/tasks/validate.yml`; each returns a
list of messages that name the variable and the fix, empty when all is well):

    {{ os_firewall_allowed_ports | os_firewall_port_problems('os_firewall_allowed_ports') }}
    {{ os_firewall_allowed_cidrs | os_firewall_cidr_problems('os_firewall_allowed_cidrs') }}

Rule sets (what the role makes; every rule carries the label `os_firewall`):

    {{ ports | os_firewall_rules(cidrs) }}
        -> [{port: 7860, proto: tcp, src: 0.0.0.0/0, family: ipv4, comment: 'os_firewall: app'}, ...]
    {{ tuples | os_firewall_ufw_stale(desired_rules) }}     -> labelled ufw rules to delete
    {{ desired_rules | os_firewall_ufw_missing(tuples) }}   -> desired rules ufw does not hold yet
    {{ desired_rules | os_firewall_firewalld_rich_rules(service) }}
    {{ current_rich_rules | os_firewall_firewalld_stale(desired_rich_rules) }}

Reading a host's firewall is the module `cosyvoice.deploy.os_firewall_facts`
(it runs the probes itself); the readers and evaluators live in
plugins/module_utils/firewall_*.py. The filters below only wrap them, for
output that is already at hand:

    {{ user_rules_text | os_firewall_ufw_tuples }}          -> parsed /etc/ufw/user*.rules
    {{ ufw_status_text | os_firewall_ufw_status(user_rules_text, ports) }}
    {{ list_all_text | os_firewall_firewalld_status(ports, {service: info_text}) }}
    {{ nft_json_text | os_firewall_nft_status(ports) }}

Each status has the shape of the fact os_firewall (see the module's RETURN).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from ansible_collections.cosyvoice.deploy.plugins.module_utils import netshape
from ansible_collections.cosyvoice.deploy.plugins.module_utils.firewall_firewalld import (
    ROLE_SERVICE_PREFIX,
    parse_rich_rule,
)
from ansible_collections.cosyvoice.deploy.plugins.module_utils.firewall_model import (
    FAMILIES,
    LABEL,
    Reach,
    is_any_network,
    port_result,
    unique_ports,
)
from ansible_collections.cosyvoice.deploy.plugins.module_utils.firewall_status import Probes, host_status
from ansible_collections.cosyvoice.deploy.plugins.module_utils.firewall_ufw import ufw_tuples

PROTOS = netshape.PROTOS
_PURPOSE_UNSAFE = re.compile(r"[^A-Za-z0-9 _.:/-]+")

__all__ = ["unique_ports", "ufw_tuples"]  # re-exported: the role's tasks use them as filters


# --------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------
def port_problems(ports: Any, var: str = "os_firewall_allowed_ports") -> list[str]:
    """Messages for every entry of a port list that the role cannot use."""
    fix = f"Fix: give {var} as a list of {{port: 1-65535, proto: tcp|udp, purpose: text}}."
    if ports is None:
        return []
    if not isinstance(ports, list):
        return [f"{var} must be a list, got {type(ports).__name__}. {fix}"]
    problems: list[str] = []
    for index, entry in enumerate(ports):
        where = f"{var}[{index}]"
        faults = netshape.port_entry_faults(entry)
        if "not a mapping" in faults:
            problems.append(f"{where} = {entry!r} is not a dict. {fix}")
            continue
        if "port" in faults:
            problems.append(f"{where}.port = {entry.get('port')!r} is not a port number (an integer 1-65535). {fix}")
        if "proto" in faults:
            problems.append(f"{where}.proto = {entry.get('proto')!r} is not one of {', '.join(PROTOS)}. {fix}")
    return problems


def admin_port_problems(ports: Any, var: str = "os_firewall_extra_admin_ports") -> list[str]:
    """Messages for a list of plain TCP port numbers (or one number) that is not usable."""
    values = ports if isinstance(ports, list) else [ports]
    return [
        f"{var} contains {value!r}, which is not a port number (an integer 1-65535). Fix: use TCP port numbers."
        for value in values
        if netshape.port_number(value) is None
    ]


def cidr_problems(cidrs: Any, var: str = "os_firewall_allowed_cidrs") -> list[str]:
    """Messages for every entry of a CIDR list that is not a network address."""
    fix = f"Fix: list networks in {var} such as 203.0.113.0/24, 2001:db8::/32 or 0.0.0.0/0 and ::/0 for any source."
    if not isinstance(cidrs, list):
        return [f"{var} must be a list of CIDRs, got {type(cidrs).__name__}. {fix}"]
    problems: list[str] = []
    for index, value in enumerate(cidrs):
        if netshape.network(value) is not None:
            continue
        loose = netshape.suggested_network(value) if isinstance(value, str) else None
        hint = f" (host bits are set: did you mean {loose}?)" if loose else ""
        problems.append(f"{var}[{index}] = {value!r} is not a valid CIDR{hint}. {fix}")
    return problems


# --------------------------------------------------------------------------
# The rules the role makes
# --------------------------------------------------------------------------
def normalize_cidr(value: str) -> str:
    """'10.1.2.3' -> '10.1.2.3/32'; '2001:DB8::/32' -> '2001:db8::/32'."""
    return str(ipaddress.ip_network(str(value).strip(), strict=False))


def comment(purpose: Any = None, label: str = LABEL) -> str:
    """The label every managed rule carries: 'os_firewall: app'."""
    text = _PURPOSE_UNSAFE.sub("-", str(purpose or "port")).strip(" -")[:64] or "port"
    return f"{label}: {text}"


def rules(
    ports: list[dict[str, Any]] | None, cidrs: list[str], families: list[str] | None = None, label: str = LABEL
) -> list[dict[str, Any]]:
    """One rule per port and source CIDR, optionally limited to some address families."""
    allowed_families = families or list(FAMILIES)
    sources = list(dict.fromkeys(normalize_cidr(cidr) for cidr in cidrs))
    return [
        {
            "port": entry["port"],
            "proto": entry["proto"],
            "src": src,
            "family": netshape.family(src),
            "comment": comment(entry["purpose"], label),
        }
        for entry in unique_ports(ports)
        for src in sources
        if netshape.family(src) in allowed_families
    ]


def admin_ports(ssh_port: Any, extra: Any = None, ssh_connection: Any = None) -> list[dict[str, Any]]:
    """The TCP ports that must never be closed: SSH, the port this session uses, extra admin ports."""
    candidates: list[Any] = [ssh_port]
    candidates.extend(extra if isinstance(extra, list) else ([extra] if extra else []))
    if isinstance(ssh_connection, str) and len(ssh_connection.split()) == 4:
        candidates.append(ssh_connection.split()[3])
    result: list[dict[str, Any]] = []
    for value in candidates:
        port = netshape.port_number(value)
        if port is not None and all(item["port"] != port for item in result):
            result.append({"port": port, "proto": "tcp", "purpose": "admin"})
    return result


def _norm_or_raw(addr: str) -> str:
    return netshape.suggested_network(addr) or addr


def _is_role_shaped(item: dict[str, Any]) -> bool:
    """Inbound, any destination, any source port, no interface or app: the only ufw rule shape the role makes."""
    return (
        item["direction"] == "in"
        and not item["interface"]
        and not item["app"]
        and is_any_network(item["dst"])
        and item["sport"] == "any"
    )


def ufw_stale(tuples: list[dict[str, Any]], desired: list[dict[str, Any]], label: str = LABEL) -> list[dict[str, Any]]:
    """The labelled ufw rules that are no longer wanted, as arguments for `community.general.ufw`.

    Only rules whose comment starts with the label are considered: rules that
    someone else made are never returned.
    """
    wanted = {(rule["proto"], str(rule["port"]), rule["src"]) for rule in desired}
    stale: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for item in tuples:
        if not item["comment"].startswith(label) or not _is_role_shaped(item):
            continue
        src = _norm_or_raw(item["src"])
        key = (item["action"], item["proto"], item["dport"], src)
        if (item["proto"], item["dport"], src) not in wanted and key not in stale:
            stale[key] = {
                "rule": item["action"],
                "proto": item["proto"],
                "port": item["dport"],
                "src": src,
                "comment": item["comment"],
            }
    return list(stale.values())


def ufw_missing(desired: list[dict[str, Any]], tuples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The desired allow rules that ufw's user rules do not hold yet (same port, protocol, source
    and comment, inbound, the role's shape): the only ones `community.general.ufw` would add or
    update (a rule present with another comment is updated by ufw, so it counts as missing)."""
    present = {
        (item["proto"], item["dport"], _norm_or_raw(item["src"]), item["comment"])
        for item in tuples
        if item["action"] == "allow" and _is_role_shaped(item)
    }
    return [rule for rule in desired
            if (rule["proto"], str(rule["port"]), _norm_or_raw(rule["src"]), rule["comment"]) not in present]


def firewalld_rich_rules(desired: list[dict[str, Any]], service: str) -> list[str]:
    """Rich rules (in firewalld's own normalised spelling) that let each source reach `service`."""
    sources = sorted({(rule["family"], rule["src"]) for rule in desired})
    return [f'rule family="{family}" source address="{src}" service name="{service}" accept' for family, src in sources]


def _rich_key(rule: str) -> tuple[Any, ...]:
    parsed = parse_rich_rule(rule)
    source = parsed.source
    src = _norm_or_raw(source[2]) if source else None
    return (parsed.family, source[0] if source else None, src, parsed.service, parsed.verdict)


def firewalld_stale(current: list[str] | None, desired: list[str], prefix: str = ROLE_SERVICE_PREFIX) -> list[str]:
    """Current rich rules that reference one of the role's services but are no longer wanted."""
    wanted = {_rich_key(rule) for rule in desired}
    result: list[str] = []
    for rule in current or []:
        if not (parse_rich_rule(rule).service or "").startswith(prefix):
            continue
        if _rich_key(rule) not in wanted and rule not in result:
            result.append(rule)
    return result


# --------------------------------------------------------------------------
# Thin readers over output at hand (the module os_firewall_facts reads a host)
# --------------------------------------------------------------------------
def ufw_status(status_text: str | None, user_rules_text: str | None, ports: list[dict[str, Any]] | None) -> dict:
    """ufw's user rules (first match wins) and default incoming policy."""
    return host_status(Probes(ufw_status=status_text or "", ufw_rules=user_rules_text), ports)


def firewalld_status(
    list_all_text: str | None, ports: list[dict[str, Any]] | None, services: dict[str, str] | None = None
) -> dict:
    """A firewalld zone (`firewall-cmd --zone=Z --list-all`) with its services' `--info-service` output."""
    probes = Probes(firewalld_active=True, firewalld_zone=list_all_text, firewalld_services=dict(services or {}))
    return host_status(probes, ports)


def nft_status(ruleset_json: str | None, ports: list[dict[str, Any]] | None) -> dict:
    """Every filter chain on the input hook of an nftables ruleset (`nft -j list ruleset`)."""
    return host_status(Probes(nft_json=ruleset_json or ""), ports)


def no_firewall_status(ports: list[dict[str, Any]] | None, reason: str = "no active host firewall") -> dict[str, Any]:
    """Status for a host on which nothing filters incoming traffic."""
    entries = [
        port_result(p["port"], p["proto"], dict.fromkeys(FAMILIES, Reach.ANY), reason) for p in unique_ports(ports)
    ]
    return {"active": False, "default_incoming": "allow", "managed": False, "ports": entries}


def unknown_status(ports: list[dict[str, Any]] | None, reason: str) -> dict[str, Any]:
    """Status when the host could not be inspected (no root, tool missing)."""
    entries = [
        port_result(p["port"], p["proto"], dict.fromkeys(FAMILIES, Reach.UNKNOWN), reason) for p in unique_ports(ports)
    ]
    return {"active": None, "default_incoming": None, "managed": False, "ports": entries}


class FilterModule:
    """Filters for the os_firewall role."""

    def filters(self) -> dict[str, Any]:
        return {
            "os_firewall_port_problems": port_problems,
            "os_firewall_admin_port_problems": admin_port_problems,
            "os_firewall_cidr_problems": cidr_problems,
            "os_firewall_unique_ports": unique_ports,
            "os_firewall_admin_ports": admin_ports,
            "os_firewall_rules": rules,
            "os_firewall_ufw_tuples": ufw_tuples,
            "os_firewall_ufw_stale": ufw_stale,
            "os_firewall_ufw_missing": ufw_missing,
            "os_firewall_ufw_status": ufw_status,
            "os_firewall_firewalld_rich_rules": firewalld_rich_rules,
            "os_firewall_firewalld_stale": firewalld_stale,
            "os_firewall_firewalld_status": firewalld_status,
            "os_firewall_nft_status": nft_status,
            "os_firewall_no_firewall_status": no_firewall_status,
            "os_firewall_unknown_status": unknown_status,
        }
