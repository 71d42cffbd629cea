"""Logic for the `os_firewall` role that would be unreadable in Jinja.

Input checks (used by `roles/os_firewall/tasks/validate.yml`; each returns a
list of messages that name the variable and the fix, empty when all is well):

    {{ os_firewall_allowed_ports | os_firewall_port_problems('os_firewall_allowed_ports') }}
    {{ os_firewall_allowed_cidrs | os_firewall_cidr_problems('os_firewall_allowed_cidrs') }}

Rule sets (what the role makes; every rule carries the label `os_firewall`):

    {{ ports | os_firewall_rules(cidrs) }}
        -> [{port: 7860, proto: tcp, src: 0.0.0.0/0, family: ipv4, comment: 'os_firewall: app'}, ...]
    {{ user_rules_text | os_firewall_ufw_tuples }}          -> parsed /etc/ufw/user*.rules
    {{ tuples | os_firewall_ufw_stale(desired_rules) }}     -> labelled ufw rules to delete
    {{ desired_rules | os_firewall_firewalld_rich_rules(service) }}
    {{ current_rich_rules | os_firewall_firewalld_stale(desired_rich_rules) }}

Read-only status of whatever firewall a host runs (`tasks/status.yml`):

    {{ ufw_status_text | os_firewall_ufw_status(user_rules_text, ports) }}
    {{ firewalld_dump_text | os_firewall_firewalld_status(ports) }}
    {{ nft_json_text | os_firewall_nft_status(ports) }}

Each status returns {active, default_incoming, managed, ports: [{port, proto,
allowed, scope, families, reason}]} where `scope` is `any` (allowed from every
source), `some` (only from some sources or interfaces), `none` (blocked) or
`unknown` (the ruleset uses something this evaluator does not model).
"""

from __future__ import annotations

import binascii
import ipaddress
import json
import re
from typing import Any

from ansible_collections.cosyvoice.deploy.plugins.module_utils import netshape

LABEL = "os_firewall"
ANY_V4 = "0.0.0.0/0"
ANY_V6 = "::/0"
PROTOS = ("tcp", "udp")
FAMILIES = ("ipv4", "ipv6")

# Outcomes of evaluating one packet (a new connection to port/proto from an
# unknown outside source) against a ruleset.
ANY = "any"
SOME = "some"
NONE = "none"
UNKNOWN = "unknown"

_PURPOSE_UNSAFE = re.compile(r"[^A-Za-z0-9 _.:/-]+")


# --------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------
def _as_port(value: Any) -> int | None:
    """The port number in `value`, or None when it is not an integer 1-65535."""
    return netshape.port_number(value)


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
        if not isinstance(entry, dict):
            problems.append(f"{where} = {entry!r} is not a dict. {fix}")
            continue
        if _as_port(entry.get("port")) is None:
            problems.append(f"{where}.port = {entry.get('port')!r} is not a port number (an integer 1-65535). {fix}")
        proto = entry.get("proto", "tcp")
        if proto not in PROTOS:
            problems.append(f"{where}.proto = {proto!r} is not one of {', '.join(PROTOS)}. {fix}")
    return problems


def admin_port_problems(ports: Any, var: str = "os_firewall_extra_admin_ports") -> list[str]:
    """Messages for a list of plain TCP port numbers (or one number) that is not usable."""
    values = ports if isinstance(ports, list) else [ports]
    return [
        f"{var} contains {value!r}, which is not a port number (an integer 1-65535). Fix: use TCP port numbers."
        for value in values
        if _as_port(value) is None
    ]


def _network(value: Any) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    return netshape.network(value)


def cidr_problems(cidrs: Any, var: str = "os_firewall_allowed_cidrs") -> list[str]:
    """Messages for every entry of a CIDR list that is not a network address."""
    fix = f"Fix: list networks in {var} such as 203.0.113.0/24, 2001:db8::/32 or 0.0.0.0/0 and ::/0 for any source."
    if not isinstance(cidrs, list):
        return [f"{var} must be a list of CIDRs, got {type(cidrs).__name__}. {fix}"]
    problems: list[str] = []
    for index, value in enumerate(cidrs):
        if _network(value) is not None:
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


def _family(cidr: str) -> str:
    return "ipv4" if ipaddress.ip_network(cidr, strict=False).version == 4 else "ipv6"


def comment(purpose: Any = None, label: str = LABEL) -> str:
    """The label every managed rule carries: 'os_firewall: app'."""
    text = _PURPOSE_UNSAFE.sub("-", str(purpose or "port")).strip(" -")[:64] or "port"
    return f"{label}: {text}"


def unique_ports(ports: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Entries normalised to {port: int, proto, purpose}, first one wins per port/proto."""
    seen: set[tuple[int, str]] = set()
    result: list[dict[str, Any]] = []
    for entry in ports or []:
        port = _as_port(entry.get("port"))
        if port is None:
            raise ValueError(f"not a port: {entry!r}")
        proto = entry.get("proto") or "tcp"
        if (port, proto) in seen:
            continue
        seen.add((port, proto))
        result.append({"port": port, "proto": proto, "purpose": entry.get("purpose") or "port"})
    return result


def rules(
    ports: list[dict[str, Any]] | None, cidrs: list[str], families: list[str] | None = None, label: str = LABEL
) -> list[dict[str, Any]]:
    """One rule per port and source CIDR, optionally limited to some address families."""
    allowed_families = families or list(FAMILIES)
    result: list[dict[str, Any]] = []
    sources = []
    for cidr in cidrs:
        norm = normalize_cidr(cidr)
        if norm not in sources:
            sources.append(norm)
    for entry in unique_ports(ports):
        for src in sources:
            family = _family(src)
            if family not in allowed_families:
                continue
            result.append(
                {
                    "port": entry["port"],
                    "proto": entry["proto"],
                    "src": src,
                    "family": family,
                    "comment": comment(entry["purpose"], label),
                }
            )
    return result


def admin_ports(ssh_port: Any, extra: Any = None, ssh_connection: Any = None) -> list[dict[str, Any]]:
    """The TCP ports that must never be closed: SSH, the port this session uses, extra admin ports."""
    candidates: list[Any] = [ssh_port]
    candidates.extend(extra if isinstance(extra, list) else ([extra] if extra else []))
    if isinstance(ssh_connection, str) and len(ssh_connection.split()) == 4:
        candidates.append(ssh_connection.split()[3])
    result: list[dict[str, Any]] = []
    for value in candidates:
        port = _as_port(value)
        if port is not None and all(item["port"] != port for item in result):
            result.append({"port": port, "proto": "tcp", "purpose": "admin"})
    return result


# --------------------------------------------------------------------------
# ufw: parse /etc/ufw/user.rules and user6.rules
# --------------------------------------------------------------------------
def _decode_comment(raw: str) -> str:
    try:
        return binascii.unhexlify(raw).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return raw


def ufw_tuples(text: str | None) -> list[dict[str, Any]]:
    """Every `### tuple ###` line of ufw's user rules, in file order.

    Format (ufw's own): action proto dport dst sport src [dapp sapp] direction[_iface] [comment=HEX]
    """
    result: list[dict[str, Any]] = []
    for line in (text or "").splitlines():
        if not line.startswith("### tuple ###"):
            continue
        fields = line[len("### tuple ###") :].split()
        note = ""
        if fields and fields[-1].startswith("comment="):
            note = _decode_comment(fields.pop()[len("comment=") :])
        if len(fields) not in (7, 9):
            continue
        action, proto, dport, dst, sport, src = fields[:6]
        direction, _, iface = fields[-1].partition("_")
        result.append(
            {
                "action": action,
                "proto": proto,
                "dport": dport,
                "dst": dst,
                "sport": sport,
                "src": src,
                "direction": direction,
                "interface": iface,
                "app": fields[6] if len(fields) == 9 else "",
                "family": "ipv6" if ":" in dst else "ipv4",
                "comment": note,
            }
        )
    return result


def _is_any(addr: str) -> bool:
    return addr in ("any", ANY_V4, ANY_V6)


def _norm_or_raw(addr: str) -> str:
    try:
        return normalize_cidr(addr)
    except ValueError:
        return addr


def ufw_stale(tuples: list[dict[str, Any]], desired: list[dict[str, Any]], label: str = LABEL) -> list[dict[str, Any]]:
    """The labelled ufw rules that are no longer wanted, as arguments for `community.general.ufw`.

    Only rules whose comment starts with the label are considered: rules that
    someone else made are never returned.
    """
    wanted = {(rule["proto"], str(rule["port"]), rule["src"]) for rule in desired}
    stale: list[dict[str, Any]] = []
    seen: set[tuple[str, str, str, str]] = set()
    for item in tuples:
        if not item["comment"].startswith(label):
            continue
        # Only the shape of rule this role makes: inbound, any destination, any source port.
        if (
            item["direction"] != "in"
            or item["interface"]
            or item["app"]
            or not _is_any(item["dst"])
            or item["sport"] != "any"
        ):
            continue
        src = _norm_or_raw(item["src"])
        key = (item["action"], item["proto"], item["dport"], src)
        if (item["proto"], item["dport"], src) in wanted or key in seen:
            continue
        seen.add(key)
        stale.append(
            {
                "rule": item["action"],
                "proto": item["proto"],
                "port": item["dport"],
                "src": src,
                "comment": item["comment"],
            }
        )
    return stale


def _port_in_spec(port: int, spec: str) -> bool:
    """ufw/firewalld port spec: 'any', '22', '8000:8010', '8000-8010', '80,443,8000:8010'."""
    if spec in ("any", ""):
        return True
    for part in spec.split(","):
        bounds = re.split(r"[:-]", part.strip())
        try:
            low, high = int(bounds[0]), int(bounds[-1])
        except ValueError:
            continue
        if low <= port <= high:
            return True
    return False


# --------------------------------------------------------------------------
# Combining partial knowledge into an outcome
# --------------------------------------------------------------------------
class _Walk:
    """Track what happened to a packet on its way through an ordered rule list."""

    def __init__(self) -> None:
        self.some_accept = False
        self.some_drop = False
        self.unknown_accept = False
        self.unknown_drop = False

    def merge(self, other: _Walk) -> None:
        self.some_accept |= other.some_accept
        self.some_drop |= other.some_drop
        self.unknown_accept |= other.unknown_accept
        self.unknown_drop |= other.unknown_drop

    def note(self, match: str, verdict: str) -> None:
        """Record a rule that matched only some packets (SOME) or maybe (UNKNOWN)."""
        if match == SOME:
            if verdict == "accept":
                self.some_accept = True
            else:
                self.some_drop = True
        elif match == UNKNOWN:
            if verdict == "accept":
                self.unknown_accept = True
            else:
                self.unknown_drop = True

    def outcome(self, verdict: str) -> str:
        if verdict == "accept":
            if self.unknown_drop:
                return UNKNOWN
            return SOME if self.some_drop else ANY
        if self.unknown_accept:
            return UNKNOWN
        return SOME if self.some_accept else NONE


def _combine_chains(outcomes: list[str]) -> str:
    """A packet must pass every base chain on a hook."""
    if NONE in outcomes:
        return NONE
    if UNKNOWN in outcomes:
        return UNKNOWN
    if SOME in outcomes:
        return SOME
    return ANY


def _port_result(port: int, proto: str, families: dict[str, str], reason: str) -> dict[str, Any]:
    values = list(families.values())
    if ANY in values:
        scope = ANY
    elif SOME in values:
        scope = SOME
    elif UNKNOWN in values:
        scope = UNKNOWN
    else:
        scope = NONE
    allowed = None if scope == UNKNOWN else scope in (ANY, SOME)
    return {"port": port, "proto": proto, "allowed": allowed, "scope": scope, "families": families, "reason": reason}


def _open_result(ports: list[dict[str, Any]] | None, reason: str) -> list[dict[str, Any]]:
    return [_port_result(p["port"], p["proto"], dict.fromkeys(FAMILIES, ANY), reason) for p in unique_ports(ports)]


def no_firewall_status(ports: list[dict[str, Any]] | None, reason: str = "no active host firewall") -> dict[str, Any]:
    """Status for a host on which nothing filters incoming traffic."""
    return {"active": False, "default_incoming": "allow", "managed": False, "ports": _open_result(ports, reason)}


# --------------------------------------------------------------------------
# ufw status
# --------------------------------------------------------------------------
def ufw_status(
    status_text: str | None, user_rules_text: str | None, ports: list[dict[str, Any]] | None
) -> dict[str, Any]:
    """Evaluate ufw's user rules (first match wins) and default incoming policy."""
    text = status_text or ""
    active = bool(re.search(r"^Status: active", text, re.M))
    match = re.search(r"Default: (\w+) \(incoming\)", text)
    default = match.group(1) if match else None
    tuples = ufw_tuples(user_rules_text)
    managed = any(t["comment"].startswith(LABEL) for t in tuples)
    if not active:
        state = no_firewall_status(ports, "ufw is installed but inactive")
        state["managed"] = managed
        return state
    results = []
    for entry in unique_ports(ports):
        families: dict[str, str] = {}
        for family in FAMILIES:
            walk = _Walk()
            verdict = "accept" if default == "allow" else "drop"
            for item in (t for t in tuples if t["family"] == family):
                if not item["direction"].startswith("in"):
                    continue
                if item["proto"] not in ("any", entry["proto"]) or not _port_in_spec(entry["port"], item["dport"]):
                    continue
                rule_verdict = "accept" if item["action"] in ("allow", "limit") else "drop"
                full = (
                    _is_any(item["src"]) and _is_any(item["dst"]) and item["sport"] == "any" and not item["interface"]
                )
                if full:
                    verdict = rule_verdict
                    break
                walk.note(SOME, rule_verdict)
            families[family] = walk.outcome(verdict)
        results.append(_port_result(entry["port"], entry["proto"], families, f"ufw (default incoming: {default})"))
    return {"active": True, "default_incoming": default, "managed": managed, "ports": results}


# --------------------------------------------------------------------------
# firewalld status
# --------------------------------------------------------------------------
_RICH_FAMILY = re.compile(r'\bfamily="?(ipv4|ipv6)"?')
_RICH_SOURCE = re.compile(r'\bsource\s+(NOT\s+)?(address|ipset|mac)="?([^"\s]+)"?')
_RICH_SERVICE = re.compile(r'\bservice\s+name="?([^"\s]+)"?')
_RICH_PORT = re.compile(r'(?<![\w-])port\s+port="?([^"\s]+)"?\s+protocol="?(\w+)"?')
_RICH_PROTOCOL = re.compile(r'\bprotocol\s+value="?(\w+)"?')
_RICH_VERDICT = re.compile(r"\b(accept|reject|drop|mark)\b(?!.*\b(accept|reject|drop|mark)\b)")


def firewalld_dump(text: str | None) -> dict[str, Any]:
    """Parse the output of tasks/status.yml's firewalld probe.

    Sections start with `### zone NAME` (followed by `firewall-cmd --list-all`)
    and `### service NAME` (followed by `firewall-cmd --info-service`).
    """
    zone: dict[str, Any] = {
        "name": None,
        "target": None,
        "ports": [],
        "protocols": [],
        "services": [],
        "rich_rules": [],
    }
    services: dict[str, dict[str, list[str]]] = {}
    section: tuple[str, str] | None = None
    for raw in (text or "").splitlines():
        line = raw.strip()
        header = re.match(r"^### (zone|service) (\S+)", raw)
        if header:
            section = (header.group(1), header.group(2))
            if section[0] == "zone":
                zone["name"] = section[1]
            else:
                services[section[1]] = {"ports": [], "protocols": [], "destination": []}
            continue
        if section is None or not line:
            continue
        key, sep, value = line.partition(":")
        if section[0] == "zone":
            if line.startswith("rule "):
                zone["rich_rules"].append(line)
            elif sep and key == "target":
                zone["target"] = value.strip()
            elif sep and key in ("ports", "protocols", "services"):
                zone[key] = value.split()
        elif sep and key in ("ports", "protocols", "destination"):
            services[section[1]][key] = value.split()
    return {"zone": zone, "services": services}


def _spec_matches(port: int, proto: str, specs: list[str]) -> bool:
    """firewalld 'ports' entries: '8080/tcp', '6000-6010/udp'."""
    for spec in specs:
        number, _, spec_proto = spec.partition("/")
        if spec_proto == proto and _port_in_spec(port, number):
            return True
    return False


def _service_match(name: str, port: int, proto: str, services: dict[str, dict[str, list[str]]], family: str) -> str:
    """A service matches ANY packet to its ports, or SOME when it is limited to destination addresses."""
    info = services.get(name)
    if info is None:
        return UNKNOWN
    if not (_spec_matches(port, proto, info["ports"]) or proto in info["protocols"]):
        return NONE
    destinations = info.get("destination", [])  # e.g. ['ipv6:fe80::/64']
    if not destinations:
        return ANY
    return SOME if any(item.startswith(f"{family}:") for item in destinations) else NONE


def _rich_rule(rule: str) -> dict[str, Any]:
    family = _RICH_FAMILY.search(rule)
    source = _RICH_SOURCE.search(rule)
    service = _RICH_SERVICE.search(rule)
    port = _RICH_PORT.search(rule)
    protocol = _RICH_PROTOCOL.search(rule)
    verdict = _RICH_VERDICT.search(rule)
    return {
        "family": family.group(1) if family else None,
        "source": (bool(source.group(1)), source.group(2), source.group(3)) if source else None,
        "destination": " destination " in f" {rule} ",
        "service": service.group(1) if service else None,
        "port": (port.group(1), port.group(2)) if port else None,
        "protocol": protocol.group(1) if protocol else None,
        "verdict": verdict.group(1) if verdict else None,
        "text": rule,
    }


def _rich_match(parsed: dict[str, Any], family: str, port: int, proto: str, services: dict[str, Any]) -> str:
    """How a rich rule matches a new connection from an unknown source: ANY, SOME, NONE, UNKNOWN."""
    if parsed["family"] and parsed["family"] != family:
        return NONE
    if parsed["service"]:
        element = _service_match(parsed["service"], port, proto, services, family)
    elif parsed["port"]:
        element = ANY if parsed["port"][1] == proto and _port_in_spec(port, parsed["port"][0]) else NONE
    elif parsed["protocol"]:
        element = ANY if parsed["protocol"] == proto else NONE
    elif re.search(r"\b(icmp-block|icmp-type|forward-port|masquerade)\b", parsed["text"]):
        element = NONE
    elif re.search(r"\bsource-port\b", parsed["text"]):
        element = SOME
    else:
        element = ANY
    if element in (NONE, UNKNOWN):
        return element
    source = parsed["source"]
    if source and not (not source[0] and source[1] == "address" and source[2] in (ANY_V4, ANY_V6)):
        return SOME
    if parsed["destination"]:
        return SOME
    return ANY


def firewalld_status(
    dump_text: str | None, ports: list[dict[str, Any]] | None, label_service: str = "os-firewall-"
) -> dict[str, Any]:
    """Evaluate the zone that holds the default route's interface (or the default zone).

    firewalld checks a zone's deny rich rules before its allow rich rules,
    ports and services, and ends with the zone's target.
    """
    dump = firewalld_dump(dump_text)
    zone = dump["zone"]
    if zone["name"] is None:
        return {
            "active": False,
            "default_incoming": "allow",
            "managed": False,
            "ports": _open_result(ports, "firewalld not running"),
        }
    services = dump["services"]
    rich = [_rich_rule(rule) for rule in zone["rich_rules"]]
    managed = any(s.startswith(label_service) for s in zone["services"]) or any(
        (r["service"] or "").startswith(label_service) for r in rich
    )
    target = zone["target"] or "default"
    default = "allow" if target == "ACCEPT" else ("drop" if target == "DROP" else "reject")
    results = []
    for entry in unique_ports(ports):
        port, proto = entry["port"], entry["proto"]
        families: dict[str, str] = {}
        for family in FAMILIES:
            walk = _Walk()
            verdict = None
            for parsed in (r for r in rich if r["verdict"] in ("drop", "reject")):
                match = _rich_match(parsed, family, port, proto, services)
                if match == ANY:
                    verdict = "drop"
                    break
                walk.note(match, "drop")
            if verdict is None:
                plain = [_service_match(name, port, proto, services, family) for name in zone["services"]]
                if _spec_matches(port, proto, zone["ports"]) or proto in zone["protocols"] or ANY in plain:
                    verdict = "accept"
                else:
                    for match in plain:
                        walk.note(match, "accept")
            if verdict is None:
                for parsed in (r for r in rich if r["verdict"] == "accept"):
                    match = _rich_match(parsed, family, port, proto, services)
                    if match == ANY:
                        verdict = "accept"
                        break
                    walk.note(match, "accept")
            if verdict is None:
                verdict = "accept" if default == "allow" else "drop"
            families[family] = walk.outcome(verdict)
        results.append(_port_result(port, proto, families, f"firewalld zone {zone['name']} (target {target})"))
    return {"active": True, "default_incoming": default, "managed": managed, "ports": results}


def firewalld_rich_rules(desired: list[dict[str, Any]], service: str) -> list[str]:
    """Rich rules (in firewalld's own normalised spelling) that let each source reach `service`."""
    result: list[str] = []
    for cidr in sorted({(rule["family"], rule["src"]) for rule in desired}, key=lambda item: (item[0], item[1])):
        text = f'rule family="{cidr[0]}" source address="{cidr[1]}" service name="{service}" accept'
        if text not in result:
            result.append(text)
    return result


def firewalld_stale(current: list[str] | None, desired: list[str], prefix: str = "os-firewall-") -> list[str]:
    """Current rich rules that reference one of the role's services but are no longer wanted."""

    def key(rule: str) -> tuple[Any, ...]:
        parsed = _rich_rule(rule)
        source = parsed["source"]
        src = _norm_or_raw(source[2]) if source else None
        return (parsed["family"], source[0] if source else None, src, parsed["service"], parsed["verdict"])

    wanted = {key(rule) for rule in desired}
    result = []
    for rule in current or []:
        parsed = _rich_rule(rule)
        if not (parsed["service"] or "").startswith(prefix):
            continue
        if key(rule) not in wanted and rule not in result:
            result.append(rule)
    return result


# --------------------------------------------------------------------------
# nftables status: a small evaluator for `nft -j list ruleset`
# --------------------------------------------------------------------------
_MAX_DEPTH = 16


class _Packet:
    def __init__(self, family: str, proto: str, port: int) -> None:
        self.family = family  # ipv4 | ipv6
        self.proto = proto
        self.port = port

    @property
    def nf(self) -> str:
        return "ip" if self.family == "ipv4" else "ip6"


class _Ruleset:
    def __init__(self, objects: list[dict[str, Any]]) -> None:
        self.chains: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.rules: dict[tuple[str, str, str], list[list[dict[str, Any]]]] = {}
        self.sets: dict[tuple[str, str, str], list[Any]] = {}
        for obj in objects:
            if "chain" in obj:
                chain = obj["chain"]
                key = (chain["family"], chain["table"], chain["name"])
                self.chains[key] = chain
                self.rules.setdefault(key, [])
            elif "rule" in obj:
                rule = obj["rule"]
                self.rules.setdefault((rule["family"], rule["table"], rule["chain"]), []).append(rule.get("expr", []))
            elif "set" in obj:
                nset = obj["set"]
                self.sets[(nset["family"], nset["table"], nset["name"])] = list(nset.get("elem", []))

    def base_input_chains(self, packet: _Packet) -> list[tuple[str, str, str]]:
        keys = [
            key
            for key, chain in self.chains.items()
            if chain.get("hook") == "input"
            and chain.get("type", "filter") == "filter"
            and key[0] in ("inet", packet.nf)
        ]
        return sorted(keys, key=lambda key: _prio(self.chains[key].get("prio", 0)))


def _prio(value: Any) -> int:
    names = {"raw": -300, "mangle": -150, "dstnat": -100, "filter": 0, "security": 50, "srcnat": 100}
    if isinstance(value, int):
        return value
    return names.get(str(value), 0)


def _compare(op: str, hit: bool | None) -> bool | None:
    if hit is None:
        return None
    return (not hit) if op == "!=" else hit


def _value_in(value: Any, right: Any, lookup: Any) -> bool | None:
    """Whether `value` (an int or a name) is in the right-hand side of a match."""
    if isinstance(right, dict):
        if "set" in right:
            return _any_in(value, right["set"])
        if "range" in right:
            low, high = right["range"]
            return isinstance(value, int) and isinstance(low, int) and isinstance(high, int) and low <= value <= high
        return None
    if isinstance(right, list):
        return _any_in(value, right)
    if isinstance(right, str) and right.startswith("@"):
        elems = lookup(right[1:])
        return None if elems is None else _any_in(value, elems)
    return bool(value == right)


def _any_in(value: Any, items: list[Any]) -> bool | None:
    unknown = False
    for item in items:
        if isinstance(item, dict) and "elem" in item:
            item = item["elem"].get("val")
        if isinstance(item, dict) and "range" in item:
            hit = _value_in(value, item, lambda _name: None)
        elif isinstance(item, (dict, list)):
            unknown = True
            continue
        else:
            hit = value == item
        if hit:
            return True
    return None if unknown else False


_PROTO_NUMBERS = {"tcp": 6, "udp": 17}


def _match(expr: dict[str, Any], packet: _Packet, lookup: Any) -> str:
    """ANY (matches every such packet), NONE, SOME (depends on source/interface/address) or UNKNOWN."""
    op = expr.get("op", "==")
    if op not in ("==", "!=", "in"):
        return UNKNOWN
    left, right = expr.get("left"), expr.get("right")
    if not isinstance(left, dict):
        return UNKNOWN
    hit: bool | None
    if "payload" in left:
        payload = left["payload"]
        proto, field = payload.get("protocol"), payload.get("field")
        if proto in ("tcp", "udp", "th") and field in ("dport", "sport"):
            if proto != "th" and proto != packet.proto:
                return NONE  # `tcp dport ...` implies `meta l4proto tcp`, whatever the operator
            if field == "sport":
                return SOME
            hit = _compare(op, _value_in(packet.port, right, lookup))
        elif proto in ("ip", "ip6") and field in ("saddr", "daddr"):
            if proto != packet.nf:
                return NONE  # `ip saddr ...` implies an IPv4 packet, whatever the operator
            if field == "saddr" and op != "!=" and isinstance(right, dict) and right.get("prefix", {}).get("len") == 0:
                return ANY
            return SOME
        elif proto in ("icmp", "icmpv6", "sctp", "dccp", "udplite", "esp", "ah"):
            return NONE if op != "!=" else ANY
        else:
            return UNKNOWN
    elif "meta" in left:
        key = left["meta"].get("key")
        if key == "l4proto":
            hit = _compare(
                op, _value_in(packet.proto, right, lookup) or _value_in(_PROTO_NUMBERS[packet.proto], right, lookup)
            )
        elif key == "nfproto":
            hit = _compare(op, _value_in(packet.family, right, lookup))
        elif key == "protocol":
            hit = _compare(op, _value_in(packet.nf, right, lookup) or _value_in(packet.family, right, lookup))
        elif key in ("iif", "iifname"):
            if right == "lo":
                return NONE if op != "!=" else ANY
            return SOME
        elif key == "iiftype":
            hit = _compare(op, _value_in("ether", right, lookup))
        else:
            return UNKNOWN
    elif "ct" in left:
        if left["ct"].get("key") != "state":
            return UNKNOWN
        hit = _compare(op, _value_in("new", right, lookup))
    else:
        return UNKNOWN
    if hit is None:
        return UNKNOWN
    return ANY if hit else NONE


_IGNORED_STATEMENTS = ("counter", "log", "limit", "quota", "set", "notrack", "mangle", "meta", "ct")


def _walk_chain(rules: _Ruleset, key: tuple[str, str, str], packet: _Packet, depth: int) -> tuple[str, _Walk]:
    """('accept'|'drop'|'continue'|'unknown', walk) for one chain."""
    walk = _Walk()
    if depth > _MAX_DEPTH or key not in rules.chains:
        return "unknown", walk

    def lookup(name: str) -> list[Any] | None:
        return rules.sets.get((key[0], key[1], name))

    for exprs in rules.rules.get(key, []):
        match = ANY
        verdict: str | None = None
        target: str | None = None
        for expr in exprs:
            if not isinstance(expr, dict) or not expr:
                continue
            name = next(iter(expr))
            if name == "match":
                result = _match(expr["match"], packet, lookup)
                if result == NONE:
                    match = NONE
                    break
                if result == UNKNOWN or match == UNKNOWN:
                    match = UNKNOWN
                elif result == SOME:
                    match = SOME
            elif name in ("accept", "drop", "reject"):
                verdict = "accept" if name == "accept" else "drop"
                break
            elif name in ("jump", "goto"):
                verdict = name
                target = expr[name].get("target")
                break
            elif name == "return":
                verdict = "return"
                break
            elif name in _IGNORED_STATEMENTS:
                continue
            else:  # xt, queue, vmap, anything not modelled
                match = UNKNOWN if match != NONE else match
                if name in ("queue", "vmap"):
                    verdict = "unknown"
                    break
        if match == NONE or verdict is None:
            continue
        if verdict == "unknown":
            walk.unknown_accept = walk.unknown_drop = True
            continue
        if verdict in ("jump", "goto"):
            sub_verdict, sub_walk = _walk_chain(rules, (key[0], key[1], target or ""), packet, depth + 1)
            walk.merge(sub_walk)
            if sub_verdict == "unknown":
                walk.unknown_accept = walk.unknown_drop = True
                continue
            if sub_verdict == "continue":
                if verdict == "goto" and match == ANY:
                    return "continue", walk
                continue
            verdict = sub_verdict
        if verdict == "return":
            if match == ANY:
                return "continue", walk
            continue
        if match == ANY:
            return verdict, walk
        walk.note(match, verdict)
    return "continue", walk


def nft_status(ruleset_json: str | None, ports: list[dict[str, Any]] | None) -> dict[str, Any]:
    """Evaluate every filter chain on the input hook of an nftables ruleset."""
    try:
        objects = json.loads(ruleset_json or "{}").get("nftables", [])
    except ValueError:
        return {
            "active": None,
            "default_incoming": None,
            "managed": False,
            "ports": _unknown_result(ports, "unreadable nft output"),
        }
    rules = _Ruleset(objects)
    managed = any(key[1] == LABEL for key in rules.chains)
    probe = [rules.base_input_chains(_Packet(family, "tcp", 1)) for family in FAMILIES]
    if not any(probe):
        state = no_firewall_status(ports, "no nftables chain on the input hook")
        state["managed"] = managed
        return state
    policies = {rules.chains[key].get("policy", "accept") for keys in probe for key in keys}
    results = []
    for entry in unique_ports(ports):
        families: dict[str, str] = {}
        for family in FAMILIES:
            packet = _Packet(family, entry["proto"], entry["port"])
            outcomes = []
            for key in rules.base_input_chains(packet):
                verdict, walk = _walk_chain(rules, key, packet, 0)
                if verdict == "continue":
                    verdict = "accept" if rules.chains[key].get("policy", "accept") == "accept" else "drop"
                outcomes.append(UNKNOWN if verdict == "unknown" else walk.outcome(verdict))
            families[family] = _combine_chains(outcomes) if outcomes else ANY
        results.append(_port_result(entry["port"], entry["proto"], families, "nftables input hook"))
    return {
        "active": True,
        "default_incoming": "drop" if "drop" in policies else "accept",
        "managed": managed,
        "ports": results,
    }


def _unknown_result(ports: list[dict[str, Any]] | None, reason: str) -> list[dict[str, Any]]:
    return [_port_result(p["port"], p["proto"], dict.fromkeys(FAMILIES, UNKNOWN), reason) for p in unique_ports(ports)]


def unknown_status(ports: list[dict[str, Any]] | None, reason: str) -> dict[str, Any]:
    """Status when the host could not be inspected (no root, tool missing)."""
    return {"active": None, "default_incoming": None, "managed": False, "ports": _unknown_result(ports, reason)}


# --------------------------------------------------------------------------
# The whole host: what tasks/status.yml's probe printed
# --------------------------------------------------------------------------
_SECTION = re.compile(r"^#### os_firewall (\S+)\s*$")


def _sections(text: str | None) -> dict[str, str]:
    """Split the probe output on `#### os_firewall NAME` lines."""
    sections: dict[str, list[str]] = {}
    current: str | None = None
    for line in (text or "").splitlines():
        header = _SECTION.match(line)
        if header:
            current = header.group(1)
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
    return {name: "\n".join(lines) for name, lines in sections.items()}


def host_status(probe_text: str | None, ports: list[dict[str, Any]] | None) -> dict[str, Any]:
    """os_firewall_state for any host: which firewall is active and whether each port is allowed.

    Precedence follows what filters packets: firewalld if running, else ufw if
    active, else any nftables chain on the input hook, else nothing.
    """
    sections = _sections(probe_text)
    probe: dict[str, str] = {}
    for line in sections.get("probe", "").splitlines():
        key, sep, value = line.partition(":")
        if sep:
            probe[key.strip()] = value.strip()
    if probe.get("uid") != "0":
        state = unknown_status(ports, "status.yml needs root (become: true) to read the firewall")
        backend = "unknown"
    elif probe.get("firewalld") == "active" and "firewalld" in sections:
        state = firewalld_status(sections["firewalld"], ports)
        backend = "firewalld"
    elif "ufw-status" in sections and re.search(r"^Status: active", sections["ufw-status"], re.M):
        state = ufw_status(sections["ufw-status"], sections.get("ufw-rules"), ports)
        backend = "ufw"
    elif "nft" in sections:
        state = nft_status(sections["nft"], ports)
        backend = "nftables" if state["active"] else "none"
    else:
        state = no_firewall_status(ports, "no ufw, firewalld or nftables ruleset found")
        backend = "none"
    state["backend"] = backend
    state["allowed_ports"] = [{"port": p["port"], "proto": p["proto"]} for p in state["ports"] if p["allowed"]]
    return state


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
            "os_firewall_ufw_status": ufw_status,
            "os_firewall_firewalld_rich_rules": firewalld_rich_rules,
            "os_firewall_firewalld_stale": firewalld_stale,
            "os_firewall_firewalld_status": firewalld_status,
            "os_firewall_nft_status": nft_status,
            "os_firewall_no_firewall_status": no_firewall_status,
            "os_firewall_unknown_status": unknown_status,
            "os_firewall_host_status": host_status,
        }
