"""Filters for the ``cloud_security_group`` role.

The role keeps the provider-independent logic here, where it is typed and unit-tested:

* validation helpers used by ``tasks/validate.yml`` (no cloud calls);
* ``cloud_sg_aws_rules``: the deployment's public ports -> ``amazon.aws.ec2_security_group`` rules;
* ``cloud_sg_aws_instance``: an ``ec2_instance_info`` instance (+ ``ec2_security_group_info``
  groups) -> the provider-neutral instance record every provider's lookup publishes;
* ``cloud_sg_missing``: which (port, proto, CIDR) pairs the attached groups do not allow.

Provider-neutral instance record (what ``tasks/providers/<provider>_lookup.yml`` must set as
``__cloud_security_group_instance``)::

    {"id": "i-0abc...", "network": "vpc-...", "interface": "eni-...",
     "private_ip": "10.0.0.5", "public_ip": "203.0.113.10",
     "groups": [{"id": "sg-...", "name": "default",
                 "rules": [{"proto": "tcp", "from_port": 22, "to_port": 22, "cidr": "0.0.0.0/0"}]}]}

``proto`` is ``tcp``, ``udp``, ``all`` or the provider's own protocol string; ``from_port`` /
``to_port`` are ``None`` when the rule covers every port.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.cosyvoice.deploy.plugins.module_utils import netshape

#: Protocols the public ports may use (what cosyvoice_endpoint.public_ports can contain).
PORT_PROTOCOLS: tuple[str, ...] = ("tcp", "udp")

#: AWS reports protocols by name or IANA number; -1 means every protocol.
_AWS_PROTOCOLS: dict[str, str] = {"-1": "all", "6": "tcp", "17": "udp", "1": "icmp", "58": "icmpv6"}

#: Characters AWS accepts in a security group rule description.
_AWS_DESC_ALLOWED = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ._-:/()#,@[]+=&;{}!$*")


def _network(value: str, version: int) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """Parse ``value`` as a canonical network of the given IP version, else None."""
    return netshape.network(str(value), version=version, canonical=True)


def cloud_sg_invalid_cidrs(values: Any, version: int = 4) -> list[str]:
    """Return the entries of ``values`` that are not canonical IPv``version`` networks.

    Canonical means what the cloud API echoes back (``10.0.0.0/8``, lower-case compressed
    IPv6), so that comparing the wanted rules with the live ones is exact and a second run
    changes nothing. ``10.0.0.1/8`` (host bits set) and ``2001:DB8::/32`` are rejected.
    """
    if not isinstance(values, (list, tuple)):
        return [repr(values)]
    return [str(v) for v in values if _network(str(v), int(version)) is None]


def cloud_sg_canonical_cidr(value: str) -> str:
    """Return the canonical spelling of a network (for the fix suggested in messages)."""
    return netshape.suggested_network(value) or "<not an IP network>"


def cloud_sg_cidr_hints(values: Any, version: int = 4) -> str:
    """The invalid entries of ``values`` with the canonical spelling to use instead."""
    return ", ".join(
        f"'{bad}' (did you mean {cloud_sg_canonical_cidr(bad)}?)" for bad in cloud_sg_invalid_cidrs(values, version)
    )


def cloud_sg_is_ip(value: Any) -> bool:
    """True when ``value`` is a literal IPv4 or IPv6 address (not a host name)."""
    return netshape.is_ip(value)


def cloud_sg_invalid_ports(ports: Any) -> list[str]:
    """Describe every malformed entry of a ``public_ports`` list (empty list = all good).

    Each entry must be a mapping with an integer ``port`` in 1..65535 and ``proto`` in
    :data:`PORT_PROTOCOLS` (default ``tcp``); ``purpose`` is optional free text.
    """
    if not isinstance(ports, (list, tuple)):
        return [f"not a list: {ports!r}"]
    problems: list[str] = []
    for index, entry in enumerate(ports):
        if not isinstance(entry, Mapping):
            problems.append(f"item {index} is not a mapping: {entry!r}")
            continue
        faults = netshape.port_entry_faults(dict(entry), PORT_PROTOCOLS, allow_text=False)
        if "port" in faults:
            problems.append(f"item {index}: port must be an integer 1-65535, got {entry.get('port')!r}")
        if "proto" in faults:
            problems.append(f"item {index}: proto must be one of {', '.join(PORT_PROTOCOLS)}, got {entry.get('proto')!r}")
    return problems


def _ports(ports: Iterable[Mapping[str, Any]]) -> list[tuple[int, str, str]]:
    """Sorted, de-duplicated (port, proto, purpose) triples."""
    seen: dict[tuple[int, str], str] = {}
    for entry in ports:
        key = (int(entry["port"]), str(entry.get("proto", "tcp")))
        seen.setdefault(key, str(entry.get("purpose", "") or ""))
    return [(port, proto, purpose) for (port, proto), purpose in sorted(seen.items())]


def _aws_description(prefix: str, purpose: str) -> str:
    """A rule description AWS accepts: allowed characters only, at most 255 of them."""
    text = f"{prefix}{purpose}".strip()
    return "".join(c if c in _AWS_DESC_ALLOWED else "_" for c in text)[:255]


def cloud_sg_aws_rules(
    ports: Sequence[Mapping[str, Any]],
    cidrs: Sequence[str],
    cidrs_ipv6: Sequence[str],
    description_prefix: str = "",
) -> list[dict[str, Any]]:
    """Ingress rules for ``amazon.aws.ec2_security_group`` allowing exactly ``ports``.

    One rule per (port, proto, address family) with every CIDR of that family; nothing for a
    family with no CIDRs. Ordered by port then protocol, IPv4 before IPv6, so the module input
    (and --diff) is stable from run to run.
    """
    rules: list[dict[str, Any]] = []
    for port, proto, purpose in _ports(ports):
        desc = _aws_description(description_prefix, purpose)
        for key, cidr_list in (("cidr_ip", list(cidrs)), ("cidr_ipv6", list(cidrs_ipv6))):
            if not cidr_list:
                continue
            rule: dict[str, Any] = {
                "proto": proto,
                "from_port": port,
                "to_port": port,
                key: cidr_list,
            }
            if desc:
                rule["rule_desc"] = desc
            rules.append(rule)
    return rules


def _aws_group_rules(group: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Neutral CIDR ingress rules of one ``ec2_security_group_info`` group.

    Rules that name a source group or a prefix list are left out: they do not admit clients
    by address, so they never satisfy a (port, CIDR) requirement.
    """
    rules: list[dict[str, Any]] = []
    for perm in group.get("ip_permissions") or []:
        raw_proto = str(perm.get("ip_protocol", "-1"))
        proto = _AWS_PROTOCOLS.get(raw_proto, raw_proto)
        if proto == "all":
            from_port, to_port = None, None
        else:
            from_port, to_port = perm.get("from_port"), perm.get("to_port")
            if from_port in (None, -1) or to_port in (None, -1):
                from_port, to_port = None, None
        cidrs = [r["cidr_ip"] for r in perm.get("ip_ranges") or [] if "cidr_ip" in r]
        cidrs += [r["cidr_ipv6"] for r in perm.get("ipv6_ranges") or [] if "cidr_ipv6" in r]
        for cidr in cidrs:
            rules.append({"proto": proto, "from_port": from_port, "to_port": to_port, "cidr": cidr})
    return rules


def cloud_sg_aws_instance(
    instance: Mapping[str, Any],
    security_groups: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Neutral record of an ``amazon.aws.ec2_instance_info`` instance.

    The groups are those of the primary network interface (device index 0): the interface
    that carries the instance's primary private and public address. With ``security_groups``
    (the ``ec2_security_group_info`` answer for those groups) each group gets its ``rules``.
    """
    enis = [
        eni
        for eni in instance.get("network_interfaces") or []
        if (eni.get("attachment") or {}).get("device_index") == 0
    ]
    if len(enis) != 1:
        raise AnsibleFilterError(
            f"instance {instance.get('instance_id')} has {len(enis)} network interfaces at device index 0"
            " (expected exactly one primary interface)"
        )
    eni = enis[0]
    by_id = {str(g.get("group_id")): g for g in security_groups or []}
    groups: list[dict[str, Any]] = []
    for group in eni.get("groups") or []:
        group_id = str(group["group_id"])
        record: dict[str, Any] = {"id": group_id, "name": str(group.get("group_name", ""))}
        if security_groups is not None:
            record["rules"] = _aws_group_rules(by_id.get(group_id, {}))
        groups.append(record)
    return {
        "id": str(instance["instance_id"]),
        "network": str(eni.get("vpc_id") or instance.get("vpc_id") or ""),
        "interface": str(eni["network_interface_id"]),
        "private_ip": instance.get("private_ip_address"),
        "public_ip": instance.get("public_ip_address"),
        "groups": groups,
    }


def _covers(rule: Mapping[str, Any], port: int, proto: str, cidr: str) -> bool:
    """Whether one neutral rule admits ``proto``/``port`` from every address of ``cidr``."""
    if rule.get("proto") not in ("all", proto):
        return False
    low, high = rule.get("from_port"), rule.get("to_port")
    if low is not None and high is not None and not int(low) <= port <= int(high):
        return False
    try:
        wanted = ipaddress.ip_network(cidr, strict=False)
        allowed = ipaddress.ip_network(str(rule.get("cidr")), strict=False)
    except ValueError:
        return False
    if wanted.version != allowed.version:
        return False
    return wanted.subnet_of(allowed)  # type: ignore[arg-type]


def cloud_sg_missing(
    ports: Sequence[Mapping[str, Any]],
    cidrs: Sequence[str],
    groups: Sequence[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """The (port, proto, cidr) triples that none of ``groups`` allows.

    ``groups`` are neutral groups with ``rules`` (see the module docstring). A rule allows a
    triple when its protocol matches (or is ``all``), its port range contains the port (or
    covers every port) and its CIDR contains the wanted CIDR (``0.0.0.0/0`` covers any IPv4
    range).
    """
    rules = [rule for group in groups for rule in group.get("rules") or []]
    missing: list[dict[str, Any]] = []
    for port, proto, _purpose in _ports(ports):
        for cidr in cidrs:
            if not any(_covers(rule, port, proto, str(cidr)) for rule in rules):
                missing.append({"port": port, "proto": proto, "cidr": str(cidr)})
    return missing


def cloud_sg_group_refs(groups: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """``[{id, name}]`` of neutral groups, without their rules (for reports)."""
    return [{"id": str(g.get("id", "")), "name": str(g.get("name", ""))} for g in groups]


def cloud_sg_describe_missing(missing: Sequence[Mapping[str, Any]]) -> str:
    """``7860/tcp from 0.0.0.0/0, ...`` for a ``cloud_sg_missing`` answer."""
    return ", ".join(f"{m['port']}/{m['proto']} from {m['cidr']}" for m in missing)


class FilterModule:
    """Ansible entry point."""

    def filters(self) -> dict[str, Any]:
        return {
            "cloud_sg_invalid_cidrs": cloud_sg_invalid_cidrs,
            "cloud_sg_canonical_cidr": cloud_sg_canonical_cidr,
            "cloud_sg_cidr_hints": cloud_sg_cidr_hints,
            "cloud_sg_is_ip": cloud_sg_is_ip,
            "cloud_sg_invalid_ports": cloud_sg_invalid_ports,
            "cloud_sg_aws_rules": cloud_sg_aws_rules,
            "cloud_sg_aws_instance": cloud_sg_aws_instance,
            "cloud_sg_missing": cloud_sg_missing,
            "cloud_sg_group_refs": cloud_sg_group_refs,
            "cloud_sg_describe_missing": cloud_sg_describe_missing,
        }
