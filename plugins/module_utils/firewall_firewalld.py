# -*- coding: utf-8 -*-
# Copyright: cosyvoice-deploy maintainers
# Apache License 2.0
"""firewalld, read from `firewall-cmd --zone=Z --list-all` and `firewall-cmd --info-service=S`.

firewalld decides for a zone in this order: rich rules that drop or reject,
then the zone's ports, protocols and services, then rich rules that accept,
then the zone's target (default = reject). That order is the chain built by
`zone_steps`, evaluated like any other first-match chain.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from ansible_collections.cosyvoice.deploy.plugins.module_utils.firewall_model import (
    Action,
    Owner,
    Packet,
    Reach,
    RuleList,
    RuleRef,
    Step,
    both,
    is_any_network,
    port_in_spec,
)

ROLE_SERVICE_PREFIX = "os-firewall-"
RICH_VERDICTS = {"accept": Action.ACCEPT, "drop": Action.DROP, "reject": Action.REJECT}
# A zone's target -> (what it does with the rest, default_incoming as the role reports it).
TARGETS = {
    "ACCEPT": (Action.ACCEPT, "allow"),
    "DROP": (Action.DROP, "drop"),
    "REJECT": (Action.REJECT, "reject"),
    "%%REJECT%%": (Action.REJECT, "reject"),
    "default": (Action.REJECT, "reject"),
}
LISTING_KEYS = ("target", "ports", "protocols", "services", "destination")

_RICH = {
    "family": re.compile(r'\bfamily="?(ipv4|ipv6)"?'),
    "source": re.compile(r'\bsource\s+(NOT\s+)?(address|ipset|mac)="?([^"\s]+)"?'),
    "service": re.compile(r'\bservice\s+name="?([^"\s]+)"?'),
    "port": re.compile(r'(?<![\w-])port\s+port="?([^"\s]+)"?\s+protocol="?(\w+)"?'),
    "source_port": re.compile(r'\bsource-port\s+port="?([^"\s]+)"?\s+protocol="?(\w+)"?'),
    "protocol": re.compile(r'\bprotocol\s+value="?(\w+)"?'),
    "verdict": re.compile(r"\b(accept|reject|drop|mark)\b(?!.*\b(accept|reject|drop|mark)\b)"),
}
# Rich rules whose element never matches a new inbound connection to a port.
_ELEMENTS_NONE = re.compile(r"\b(icmp-block|icmp-type|forward-port|masquerade)\b")


@dataclass(frozen=True)
class RichRule:
    text: str
    family: Optional[str] = None
    source: Optional[Tuple[bool, str, str]] = None  # (negated, address|ipset|mac, value)
    destination: bool = False
    service: Optional[str] = None
    port: Optional[Tuple[str, str]] = None  # (spec, proto)
    source_port: Optional[Tuple[str, str]] = None  # (spec, proto): only clients using that source port
    protocol: Optional[str] = None
    verdict: Optional[str] = None

    def limits_source(self) -> bool:
        """Only some sources match (not: no source, or any address)."""
        if self.source is None:
            return False
        negated, kind, value = self.source
        return negated or kind != "address" or not is_any_network(value)


@dataclass(frozen=True)
class Service:
    ports: Tuple[str, ...] = ()
    protocols: Tuple[str, ...] = ()
    destination: Tuple[str, ...] = ()  # e.g. ('ipv6:fe80::/64',)


@dataclass
class Zone:
    name: str
    target: str = "default"
    ports: List[str] = field(default_factory=list)
    protocols: List[str] = field(default_factory=list)
    services: List[str] = field(default_factory=list)
    rich_rules: List[RichRule] = field(default_factory=list)


def parse_rich_rule(text: str) -> RichRule:
    found = {key: pattern.search(text) for key, pattern in _RICH.items()}
    source = found["source"]
    return RichRule(
        text=text,
        family=found["family"].group(1) if found["family"] else None,
        source=(bool(source.group(1)), source.group(2), source.group(3)) if source else None,
        destination=" destination " in f" {text} ",
        service=found["service"].group(1) if found["service"] else None,
        port=(found["port"].group(1), found["port"].group(2)) if found["port"] else None,
        source_port=(found["source_port"].group(1), found["source_port"].group(2)) if found["source_port"] else None,
        protocol=found["protocol"].group(1) if found["protocol"] else None,
        verdict=found["verdict"].group(1) if found["verdict"] else None,
    )


def parse_listing(text: Optional[str]) -> Tuple[Optional[str], Dict[str, List[str]], List[str]]:
    """`--list-all` or `--info-service` output: (name, {key: words}, rich rule lines)."""
    name: Optional[str] = None
    values: Dict[str, List[str]] = {}
    rich: List[str] = []
    for raw in (text or "").splitlines():
        line = raw.strip()
        if not line:
            continue
        if name is None and not raw[:1].isspace():
            name = line.split()[0]
        elif line.startswith("rule "):
            rich.append(line)
        else:
            key, sep, value = line.partition(":")
            if sep and key in LISTING_KEYS:
                values[key] = value.split()
    return name, values, rich


def parse_zone(text: Optional[str]) -> Optional[Zone]:
    name, values, rich = parse_listing(text)
    if name is None:
        return None
    return Zone(
        name=name,
        target=(values.get("target") or ["default"])[0],
        ports=values.get("ports", []),
        protocols=values.get("protocols", []),
        services=values.get("services", []),
        rich_rules=[parse_rich_rule(rule) for rule in rich],
    )


def parse_service(text: Optional[str]) -> Service:
    _, values, _ = parse_listing(text)
    return Service(
        tuple(values.get("ports", [])), tuple(values.get("protocols", [])), tuple(values.get("destination", []))
    )


def referenced_services(zone: Zone) -> List[str]:
    """Services the zone uses directly or through rich rules (each once)."""
    names = list(zone.services) + [rule.service for rule in zone.rich_rules if rule.service]
    return list(dict.fromkeys(names))


def managed(zone: Zone) -> bool:
    """The role's services are in use."""
    return any(name.startswith(ROLE_SERVICE_PREFIX) for name in referenced_services(zone))


def spec_matches(packet: Packet, specs: List[str]) -> bool:
    """firewalld 'ports' entries: '8080/tcp', '6000-6010/udp'."""
    for spec in specs:
        number, _, proto = spec.partition("/")
        if proto == packet.proto and port_in_spec(packet.port, number):
            return True
    return False


def service_reach(name: str, services: Dict[str, Service], packet: Packet) -> Reach:
    """A service matches every packet to its ports, or SOME when it is limited to destination addresses."""
    info = services.get(name)
    if info is None:
        return Reach.UNKNOWN
    if not (spec_matches(packet, list(info.ports)) or packet.proto in info.protocols):
        return Reach.NONE
    if not info.destination:
        return Reach.ANY
    return Reach.SOME if any(item.startswith(f"{packet.family}:") for item in info.destination) else Reach.NONE


def _element_reach(rule: RichRule, services: Dict[str, Service], packet: Packet) -> Reach:
    """What the rule's element (service, port, protocol, ...) covers, before source and destination."""
    if rule.service:
        return service_reach(rule.service, services, packet)
    if rule.port:
        return Reach.ANY if rule.port[1] == packet.proto and port_in_spec(packet.port, rule.port[0]) else Reach.NONE
    if rule.protocol:
        return Reach.ANY if rule.protocol == packet.proto else Reach.NONE
    if _ELEMENTS_NONE.search(rule.text):
        return Reach.NONE
    if rule.source_port:
        return Reach.SOME if rule.source_port[1] == packet.proto else Reach.NONE
    return Reach.ANY


def rich_reach(rule: RichRule, services: Dict[str, Service], packet: Packet) -> Reach:
    """How a rich rule matches a new connection from an unknown source."""
    if rule.family and rule.family != packet.family:
        return Reach.NONE
    limited = Reach.SOME if rule.limits_source() or rule.destination else Reach.ANY
    return both(_element_reach(rule, services, packet), limited)


def _ref(zone: Zone, text: str) -> RuleRef:
    return RuleRef("firewalld", "zone", zone.name, zone.name, text, Owner.FIREWALLD)


def zone_steps(zone: Zone, services: Dict[str, Service], packet: Packet) -> List[Step]:
    """The zone as one first-match chain, in firewalld's order."""
    rich = [(rule, RICH_VERDICTS.get(rule.verdict or "")) for rule in zone.rich_rules]
    deny = [
        Step(rich_reach(rule, services, packet), action, _ref(zone, rule.text))
        for rule, action in rich
        if action in (Action.DROP, Action.REJECT)
    ]
    plain = [
        Step(Reach.ANY if spec_matches(packet, zone.ports) else Reach.NONE, Action.ACCEPT, _ref(zone, "ports")),
        Step(Reach.ANY if packet.proto in zone.protocols else Reach.NONE, Action.ACCEPT, _ref(zone, "protocols")),
    ]
    plain += [
        Step(service_reach(name, services, packet), Action.ACCEPT, _ref(zone, f"service {name}"))
        for name in zone.services
    ]
    accept = [
        Step(rich_reach(rule, services, packet), Action.ACCEPT, _ref(zone, rule.text))
        for rule, action in rich
        if action is Action.ACCEPT
    ]
    return deny + plain + accept


def target_of(zone: Zone) -> Tuple[Action, str]:
    return TARGETS.get(zone.target, TARGETS["default"])


def layer(zone: Zone, services: Dict[str, Service]) -> RuleList:
    return RuleList(lambda packet: zone_steps(zone, services, packet), target_of(zone)[0])
