# -*- coding: utf-8 -*-
# Copyright: cosyvoice-deploy maintainers
# Apache License 2.0
"""The shape of network input, checked the same way everywhere.

Ports, protocols, networks (CIDRs), addresses and host names reach the roles as
inventory values (os_firewall_allowed_ports, cloud_security_group_cidrs_ipv4,
cosyvoice_server_port, cosyvoice_public_address, ...) and as the
cosyvoice_endpoint fact. The filters and modules of this collection answer
"is this a port / a network / a host?" with these functions; they word their
own messages (each names its variable and the fix).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Union

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

# A modules' argument spec for a list of ports ({port, proto, purpose}): the
# firewall readers' and the cloud security groups' `ports`.
PORTS_SPEC = {
    "type": "list",
    "elements": "dict",
    "default": [],
    "options": {
        "port": {"type": "int", "required": True},
        "proto": {"type": "str", "choices": ["tcp", "udp"], "default": "tcp"},
        "purpose": {"type": "str"},
    },
}

PROTOS = ("tcp", "udp")
ANY_V4 = "0.0.0.0/0"
ANY_V6 = "::/0"
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)


def port_number(value: Any, allow_text: bool = True) -> int | None:
    """The port in `value` (an int, or digits when allow_text), or None unless it is 1-65535."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif allow_text and isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    else:
        return None
    return number if 1 <= number <= 65535 else None


def port_entry_faults(entry: Any, protos: tuple[str, ...] = PROTOS, allow_text: bool = True) -> list[str]:
    """What is wrong with one {port, proto} entry: [] or some of 'not a mapping', 'port', 'proto'."""
    if not isinstance(entry, dict):
        return ["not a mapping"]
    faults = []
    if port_number(entry.get("port"), allow_text=allow_text) is None:
        faults.append("port")
    if entry.get("proto", "tcp") not in protos:
        faults.append("proto")
    return faults


def network(value: Any, version: int | None = None, canonical: bool = False) -> Network | None:
    """A network (no host bits set), of `version` when given; canonical=True also wants the
    spelling an API echoes back ('2001:db8::/32', not '2001:DB8::/32'). Else None."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    try:
        net = ipaddress.ip_network(text, strict=True)
    except ValueError:
        return None
    if version is not None and net.version != int(version):
        return None
    if canonical and str(net) != value:
        return None
    return net


def suggested_network(value: Any) -> str | None:
    """The network a near-miss CIDR means ('10.0.0.1/8' -> '10.0.0.0/8'), or None."""
    try:
        return str(ipaddress.ip_network(str(value).strip(), strict=False))
    except ValueError:
        return None


def is_ip(value: Any) -> bool:
    try:
        ipaddress.ip_address(str(value))
        return True
    except ValueError:
        return False


def is_host(value: Any) -> bool:
    """An IP address or a DNS host name (all-numeric names such as 300.1.1.1 are neither)."""
    if not isinstance(value, str):
        return False
    if is_ip(value):
        return True
    return bool(_HOSTNAME.match(value)) and not re.fullmatch(r"[0-9.]+", value)


def is_loopback(value: Any) -> bool:
    if value == "localhost":
        return True
    try:
        return ipaddress.ip_address(str(value)).is_loopback
    except ValueError:
        return False


def is_wildcard(value: Any) -> bool:
    return str(value) in ("0.0.0.0", "::", "*", "")


def url_host(host: str) -> str:
    """Bracket IPv6 literals for URLs: 2001:db8::1 -> [2001:db8::1]."""
    return f"[{host}]" if is_ip(host) and ipaddress.ip_address(host).version == 6 else host


def family(cidr: str) -> str:
    return "ipv4" if ipaddress.ip_network(cidr, strict=False).version == 4 else "ipv6"
