# -*- coding: utf-8 -*-
# Copyright: cosyvoice-deploy maintainers
# Apache License 2.0
"""Listening sockets: `ss -H -tlnp` output, who can reach them, and the systemd unit
of the process holding them (/proc/<pid>/cgroup).

Pure functions (stdlib only): the host_probe module runs them on the host, the
diagnosis and listeners filters on the controller.

The seed article's first diagnostic step is `ss -tuln | grep :7860`: is the
service listening, and on 0.0.0.0 or only on 127.0.0.1?

Address forms `ss` prints (iproute2 6.1 and 6.15, samples in tests/unit/data/ss/):

    0.0.0.0:7860            IPv4 wildcard
    *:7860                  IPv6 wildcard, dual-stack (IPV6_V6ONLY=0): IPv4 and IPv6 clients
    [::]:7860               IPv6 wildcard, v6only: IPv6 clients only
    127.0.0.1:7860          loopback
    [::1]:7860              IPv6 loopback
    [::ffff:127.0.0.1]:7860 IPv4-mapped loopback (a dual-stack socket bound to 127.0.0.1)
    127.0.0.53%lo:53        bound to an address and a device (SO_BINDTODEVICE)
    0.0.0.0%eth0:7860       wildcard, but only on one interface
    [fe80::1]%eth0:22       link-local, scoped
    :::22                   old iproute2 (< 4.x) spelling of [::]:22
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Iterable

from ansible_collections.cosyvoice.deploy.plugins.module_utils.netshape import is_ip, is_loopback, is_wildcard

# users:(("python3",pid=123,fd=3),("nginx",pid=7,fd=6)) -- ss does not escape
# quotes inside the name, so the name ends at the first '",pid=' that follows.
_PROCESS = re.compile(r'\("(?P<name>.*?)",pid=(?P<pid>\d+),fd=(?P<fd>\d+)\)')
_NETIDS = ("tcp", "udp", "raw", "u_str", "u_dgr", "u_seq", "p_raw", "p_dgr", "nl", "mptcp", "sctp", "dccp")
_UNIT = re.compile(r"[^/]+\.(?:service|scope)$")
# /proc/<pid>/cgroup line: hierarchy-ID:controller-list:cgroup-path
_CGROUP_LINE = re.compile(r"^(\d+):([^:]*):(.*)$")
# The same, prefixed by `grep -H '' /proc/<pid>/cgroup`.
_GREP_CGROUP_LINE = re.compile(r"^/proc/(\d+)/cgroup:(.*)$")

# Who can connect to a listener, from the widest to the narrowest.
SCOPE_ANY = "any"  # 0.0.0.0, [::] or *: every interface
SCOPE_INTERFACE = "interface"  # wildcard restricted to one non-loopback device (0.0.0.0%eth0)
SCOPE_ADDRESS = "address"  # one non-loopback address (10.0.0.5:7860)
SCOPE_LOOPBACK = "loopback"  # 127.0.0.0/8, ::1, ::ffff:127.x, or any address on device lo
SCOPE_ORDER = (SCOPE_ANY, SCOPE_INTERFACE, SCOPE_ADDRESS, SCOPE_LOOPBACK)


class ListenerParseError(ValueError):
    """A line of `ss` output that is not a listener line."""


def split_address(field: str) -> tuple[str, str | None, str]:
    """'[fe80::1]%eth0:22' -> ('fe80::1', 'eth0', '22'); '*:7860' -> ('*', None, '7860')."""
    host, sep, port = field.rpartition(":")
    if not sep or not host:
        raise ListenerParseError(f"not an address:port field: {field!r}")
    interface = None
    if "%" in host:
        host, _, interface = host.rpartition("%")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, interface or None, port


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    return ipaddress.ip_address(host) if is_ip(host) else None


def _mapped(ip: Any) -> ipaddress.IPv4Address | None:
    """The IPv4 address inside an IPv4-mapped IPv6 address (::ffff:a.b.c.d), else None."""
    return ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None


def _is_loopback(host: str, interface: str | None) -> bool:
    if interface == "lo" or is_loopback(host):
        return True
    mapped = _mapped(_ip(host))
    return mapped is not None and mapped.is_loopback


def _family_serves(host: str) -> tuple[str, list[str]]:
    """(family of the socket, families of the clients it serves)."""
    ip = _ip(host)
    if host == "*":
        return "dual", ["ipv4", "ipv6"]
    if host == "0.0.0.0" or isinstance(ip, ipaddress.IPv4Address):
        return "ipv4", ["ipv4"]
    if _mapped(ip) is not None:
        return "ipv6", ["ipv4"]  # a v4-mapped address only ever sees IPv4 peers
    return "ipv6", ["ipv6"]


def classify(host: str, interface: str | None) -> dict[str, Any]:
    """Family, scope and flags of a listening address."""
    wildcard = is_wildcard(host) and host != ""
    loopback = _is_loopback(host, interface)
    family, serves = _family_serves(host)
    if loopback:
        scope = SCOPE_LOOPBACK
    elif wildcard:
        scope = SCOPE_INTERFACE if interface else SCOPE_ANY
    else:
        scope = SCOPE_ADDRESS
    return {"family": family, "serves": serves, "wildcard": wildcard, "loopback": loopback, "scope": scope}


def parse_processes(field: str) -> list[dict[str, Any]]:
    """users:(("python3",pid=1,fd=3),...) -> [{'name': 'python3', 'pid': 1, 'fd': 3}, ...]."""
    return [
        {"name": m.group("name"), "pid": int(m.group("pid")), "fd": int(m.group("fd"))}
        for m in _PROCESS.finditer(field or "")
    ]


def _queue(text: str) -> Any:
    return int(text) if text.isdigit() else text


def parse_line(line: str) -> dict[str, Any] | None:
    """One `ss` line -> listener dict; None for blank and header lines."""
    text = line.strip()
    first = text.split(None, 1)[0] if text else ""
    if first in ("", "State", "Netid"):
        return None
    netid = "tcp"
    if first in _NETIDS:
        netid, text = first, text.split(None, 1)[1]
    parts = text.split(None, 5)
    if len(parts) < 5:
        raise ListenerParseError(f"unexpected ss line (want: State Recv-Q Send-Q Local Peer [Process]): {line!r}")
    state, recv_q, send_q, local, peer = parts[:5]
    host, interface, port_text = split_address(local)
    if not port_text.isdigit():
        raise ListenerParseError(f"non-numeric port in {local!r} (run ss with -n)")
    listener: dict[str, Any] = {
        "netid": netid, "state": state, "recv_q": _queue(recv_q), "send_q": _queue(send_q), "local": local,
        "address": host, "interface": interface, "port": int(port_text), "peer": peer,
        "processes": parse_processes(parts[5] if len(parts) > 5 else ""),
    }
    listener.update(classify(host, interface))
    return listener


def _as_text(text: Any) -> str:
    if isinstance(text, (list, tuple)):
        return "\n".join(str(x) for x in text)
    return str(text or "")


def _in_state(listener: dict[str, Any], state: str | None) -> bool:
    if state is None or listener["state"] == state:
        return True
    # udp sockets that receive show as UNCONN: they are udp's listeners
    return listener["netid"] == "udp" and state == "LISTEN" and listener["state"] == "UNCONN"


def ss_listeners(text: Any, state: str | None = "LISTEN") -> list[dict[str, Any]]:
    """Parse `ss -H -tlnp` (or `ss -tlnp`, `ss -tuln`) output; keep lines in `state` (None = all).

    Raises ListenerParseError on a line that is not a socket line."""
    listeners = (parse_line(line) for line in _as_text(text).splitlines())
    return [x for x in listeners if x is not None and _in_state(x, state)]


def ss_listeners_tolerant(text: Any, state: str | None = "LISTEN") -> tuple[list[dict[str, Any]], list[str]]:
    """Like ss_listeners, but collects the lines it cannot parse instead of raising: (listeners, errors)."""
    listeners: list[dict[str, Any]] = []
    errors: list[str] = []
    for line in _as_text(text).splitlines():
        try:
            listener = parse_line(line)
        except ListenerParseError as exc:
            errors.append(str(exc))
            continue
        if listener is not None and _in_state(listener, state):
            listeners.append(listener)
    return listeners, errors


def port_int(port: Any) -> int:
    try:
        return int(port)
    except (TypeError, ValueError):
        raise ListenerParseError(f"port must be a number, got {port!r}") from None


def listeners_on_port(listeners: list[dict[str, Any]], port: Any, netid: str = "tcp") -> list[dict[str, Any]]:
    """The listeners on one port (tcp by default)."""
    wanted = port_int(port)
    return [x for x in listeners or [] if x.get("port") == wanted and x.get("netid", "tcp") == netid]


def address_family(address: str | None) -> str | None:
    """'ipv4' or 'ipv6' for an IP address (IPv4-mapped counts as ipv4); None for names and nothing."""
    ip = _ip(address) if address else None
    if ip is None:
        return None
    return "ipv4" if ip.version == 4 or _mapped(ip) is not None else "ipv6"


def unique_processes(listeners: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """[{name, pid}] of the processes holding `listeners`, each pid once, in order of appearance."""
    seen: set[int] = set()
    out: list[dict[str, Any]] = []
    for x in listeners:
        for p in x.get("processes", []):
            if p["pid"] not in seen:
                seen.add(p["pid"])
                out.append({"name": p["name"], "pid": p["pid"]})
    return out


def _serves_public(listener: dict[str, Any], family: str | None) -> bool:
    return not listener["loopback"] and (family is None or family in listener["serves"])


def listener_reach(listeners: list[dict[str, Any]], port: Any, public_address: str | None = None) -> dict[str, Any]:
    """Summarise who can connect to `port`.

    `reach` is the widest scope among the port's listeners (any > interface >
    address > loopback), or "none".  `public_ok` says whether a client using
    `public_address` can be served: some non-loopback listener serves that
    address's IP family (v6only `[::]` does not serve IPv4 clients).
    `public_exact`: a listener on every interface, or on the public address
    itself (or the public address is a host name / not given). A listener on one
    address other than the public one still serves clients behind NAT (cloud
    public IP -> private IP), so it counts for public_ok, but is flagged.
    """
    mine = listeners_on_port(listeners, port)
    scopes = {x["scope"] for x in mine}
    family = address_family(public_address)
    serving = [x for x in mine if _serves_public(x, family)]
    public_ip = _ip(public_address or "")
    exact = [x for x in serving
             if x["scope"] == SCOPE_ANY or (public_ip is not None and _ip(x["address"]) == public_ip)]
    return {
        "port": port_int(port),
        "listening": bool(mine),
        "reach": next((s for s in SCOPE_ORDER if s in scopes), "none"),
        "loopback_only": bool(mine) and all(x["loopback"] for x in mine),
        "public_ok": bool(serving),
        "public_exact": bool(exact) or (bool(serving) and public_ip is None),
        "public_family": family,
        "addresses": [x["local"] for x in mine],
        "serving_addresses": [x["local"] for x in serving],
        "processes": unique_processes(mine),
    }


def listener_pids(listeners: list[dict[str, Any]], ports: Any = None) -> list[int]:
    """Sorted unique pids holding the given ports (all ports when None)."""
    wanted = None if ports is None else {port_int(p) for p in (ports if isinstance(ports, (list, tuple)) else [ports])}
    pids = {p["pid"] for x in listeners or [] if wanted is None or x["port"] in wanted for p in x["processes"]}
    return sorted(pids)


def _unit_in_path(path: str) -> str:
    """The innermost systemd unit or scope in a cgroup path ('' if none)."""
    for part in reversed(path.split("/")):
        if _UNIT.match(part):
            return part
    return ""


def cgroup_unit(text: Any) -> str | None:
    """Contents of /proc/<pid>/cgroup -> the process's systemd unit or scope.

    cgroup v2: '0::/system.slice/cosyvoice.service'
    cgroup v1: '1:name=systemd:/system.slice/nginx.service' (other controllers' lines say nothing)
    '' when the process is in no unit (e.g. a `docker exec` shell); None when no line says.
    """
    unit: str | None = None
    for line in _as_text(text).splitlines():
        m = _CGROUP_LINE.match(line.strip())
        if not m:
            continue
        hierarchy, controllers, path = m.groups()
        if not (hierarchy == "0" or "name=systemd" in controllers):
            continue
        found = _unit_in_path(path)
        if found or unit is None:
            unit = found
    return unit


def proc_cgroup_units(text: Any) -> dict[str, str]:
    """`grep -H '' /proc/<pid>/cgroup ...` -> {'<pid>': '<unit>'} (systemd unit or scope).

    '/proc/1234/cgroup:0::/system.slice/cosyvoice.service' -> {'1234': 'cosyvoice.service'}.
    Pids in no unit (e.g. a shell's process outside systemd) map to ''.
    """
    by_pid: dict[str, list[str]] = {}
    for line in _as_text(text).splitlines():
        m = _GREP_CGROUP_LINE.match(line.strip())
        if m:
            by_pid.setdefault(m.group(1), []).append(m.group(2))
    units = {pid: cgroup_unit(lines) for pid, lines in by_pid.items()}
    return {pid: unit for pid, unit in units.items() if unit is not None}


def port_holders(listeners: list[dict[str, Any]], ports: Iterable[Any],
                 pid_units: dict[str, str]) -> list[dict[str, Any]]:
    """For each port: [{port, listening, addresses, holders: [{name, pid, unit}]}] (tcp)."""
    out = []
    for port in ports:
        mine = listeners_on_port(listeners, port)
        holders = [dict(p, unit=pid_units.get(str(p["pid"]), "")) for p in unique_processes(mine)]
        out.append({"port": port_int(port), "listening": bool(mine), "addresses": [x["local"] for x in mine],
                    "holders": holders})
    return out
