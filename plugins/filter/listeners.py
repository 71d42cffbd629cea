"""Parse `ss -H -tlnp` (and /proc/<pid>/cgroup) into facts the verify role can judge.

The seed article's first diagnostic step is `ss -tuln | grep :7860`: is the
service listening, and on 0.0.0.0 or only on 127.0.0.1?  These filters turn
that output into data:

    {{ ss_result.stdout | ss_listeners }}                      -> list of listeners
    {{ listeners | listeners_on_port(7860) }}                  -> the ones on port 7860
    {{ listeners | listener_reach(7860, '203.0.113.7') }}      -> who can connect (summary)
    {{ grep_result.stdout | proc_cgroup_units }}               -> {"1234": "cosyvoice.service"}

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
from typing import Any

# users:(("python3",pid=123,fd=3),("nginx",pid=7,fd=6)) -- ss does not escape
# quotes inside the name, so the name ends at the first '",pid=' that follows.
_PROCESS = re.compile(r'\("(?P<name>.*?)",pid=(?P<pid>\d+),fd=(?P<fd>\d+)\)')
_NETIDS = ("tcp", "udp", "raw", "u_str", "u_dgr", "u_seq", "p_raw", "p_dgr", "nl", "mptcp", "sctp", "dccp")
_UNIT = re.compile(r"[^/]+\.(?:service|scope)$")
WILDCARDS = ("0.0.0.0", "::", "*")

# Who can connect to a listener, from the widest to the narrowest.
SCOPE_ANY = "any"  # 0.0.0.0, [::] or *: every interface
SCOPE_INTERFACE = "interface"  # wildcard restricted to one non-loopback device (0.0.0.0%eth0)
SCOPE_ADDRESS = "address"  # one non-loopback address (10.0.0.5:7860)
SCOPE_LOOPBACK = "loopback"  # 127.0.0.0/8, ::1, ::ffff:127.x, or any address on device lo
_SCOPE_ORDER = (SCOPE_ANY, SCOPE_INTERFACE, SCOPE_ADDRESS, SCOPE_LOOPBACK)

try:  # an Ansible error shows as a clean task failure; plain ValueError outside Ansible
    from ansible.errors import AnsibleFilterError as _Base  # type: ignore[import-untyped,unused-ignore]
except ImportError:  # pragma: no cover
    _Base = ValueError  # type: ignore[misc,assignment,unused-ignore]


class ListenerParseError(_Base):  # type: ignore[valid-type,misc,unused-ignore]
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
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def classify(host: str, interface: str | None) -> dict[str, Any]:
    """Family, scope and flags of a listening address."""
    ip = _ip(host)
    wildcard = host in WILDCARDS
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    loopback = interface == "lo" or bool(ip is not None and (ip.is_loopback or (mapped is not None and mapped.is_loopback)))
    if host == "*":
        family, serves = "dual", ["ipv4", "ipv6"]
    elif host == "0.0.0.0" or isinstance(ip, ipaddress.IPv4Address):
        family, serves = "ipv4", ["ipv4"]
    elif mapped is not None:
        family, serves = "ipv6", ["ipv4"]  # a v4-mapped address only ever sees IPv4 peers
    else:
        family, serves = "ipv6", ["ipv6"]
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


def parse_line(line: str) -> dict[str, Any] | None:
    """One `ss` line -> listener dict; None for blank and header lines."""
    text = line.strip()
    if not text:
        return None
    first = text.split(None, 1)[0]
    if first in ("State", "Netid"):
        return None
    netid = None
    if first in _NETIDS:
        netid, text = first, text.split(None, 1)[1]
    parts = text.split(None, 5)
    if len(parts) < 5:
        raise ListenerParseError(f"unexpected ss line (want: State Recv-Q Send-Q Local Peer [Process]): {line!r}")
    state, recv_q, send_q, local, peer = parts[:5]
    process_field = parts[5] if len(parts) > 5 else ""
    host, interface, port_text = split_address(local)
    try:
        port = int(port_text)
    except ValueError:
        raise ListenerParseError(f"non-numeric port in {local!r} (run ss with -n)") from None
    listener: dict[str, Any] = {
        "netid": netid or "tcp",
        "state": state,
        "recv_q": int(recv_q) if recv_q.isdigit() else recv_q,
        "send_q": int(send_q) if send_q.isdigit() else send_q,
        "local": local,
        "address": host,
        "interface": interface,
        "port": port,
        "peer": peer,
        "processes": parse_processes(process_field),
    }
    listener.update(classify(host, interface))
    return listener


def ss_listeners(text: Any, state: str | None = "LISTEN") -> list[dict[str, Any]]:
    """Parse `ss -H -tlnp` (or `ss -tlnp`, `ss -tuln`) output; keep lines in `state` (None = all)."""
    if isinstance(text, (list, tuple)):
        text = "\n".join(str(x) for x in text)
    result = []
    for line in str(text or "").splitlines():
        listener = parse_line(line)
        if listener is None:
            continue
        if state is None or listener["state"] == state or (listener["netid"] == "udp" and state == "LISTEN"
                                                            and listener["state"] == "UNCONN"):
            result.append(listener)
    return result


def _port_int(port: Any) -> int:
    try:
        return int(port)
    except (TypeError, ValueError):
        raise ListenerParseError(f"port must be a number, got {port!r}") from None


def listeners_on_port(listeners: list[dict[str, Any]], port: Any, netid: str = "tcp") -> list[dict[str, Any]]:
    """The listeners on one port (tcp by default)."""
    wanted = _port_int(port)
    return [x for x in listeners or [] if x.get("port") == wanted and x.get("netid", "tcp") == netid]


def _family_of(address: str | None) -> str | None:
    ip = _ip(address) if address else None
    if ip is None:
        return None
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return "ipv4" if ip.version == 4 or mapped is not None else "ipv6"


def listener_reach(listeners: list[dict[str, Any]], port: Any, public_address: str | None = None) -> dict[str, Any]:
    """Summarise who can connect to `port`.

    `reach` is the widest scope among the port's listeners (any > interface >
    address > loopback), or "none".  `public_ok` says whether a client using
    `public_address` can be served: some non-loopback listener serves that
    address's IP family (v6only `[::]` does not serve IPv4 clients) and, for a
    listener bound to one address, that address is the public one (or the public
    address is a hostname / not given).
    """
    mine = listeners_on_port(listeners, port)
    scopes = {x["scope"] for x in mine}
    reach = next((s for s in _SCOPE_ORDER if s in scopes), "none")
    family = _family_of(public_address)
    serving = []
    for x in mine:
        if x["loopback"]:
            continue
        if family is not None and family not in x["serves"]:
            continue
        serving.append(x)
    # A listener on one address other than the public one still serves clients
    # behind NAT (cloud public IP -> private IP), so it counts, but is flagged.
    public_ip = _ip(public_address or "")
    exact = [x for x in serving if x["scope"] == SCOPE_ANY or (public_ip is not None and _ip(x["address"]) == public_ip)]
    processes: list[dict[str, Any]] = []
    seen = set()
    for x in mine:
        for p in x["processes"]:
            if p["pid"] not in seen:
                seen.add(p["pid"])
                processes.append({"name": p["name"], "pid": p["pid"]})
    return {
        "port": _port_int(port),
        "listening": bool(mine),
        "reach": reach,
        "loopback_only": bool(mine) and all(x["loopback"] for x in mine),
        "public_ok": bool(serving),
        "public_exact": bool(exact) or (bool(serving) and public_ip is None),
        "public_family": family,
        "addresses": [x["local"] for x in mine],
        "serving_addresses": [x["local"] for x in serving],
        "processes": processes,
    }


def proc_cgroup_units(text: Any) -> dict[str, str]:
    """`grep -H '' /proc/<pid>/cgroup ...` -> {'<pid>': '<unit>'} (systemd unit or scope).

    cgroup v2: '/proc/1234/cgroup:0::/system.slice/cosyvoice.service'
    cgroup v1: '/proc/1234/cgroup:1:name=systemd:/system.slice/nginx.service'
    Pids in no unit (e.g. a shell's process outside systemd) map to ''.
    """
    if isinstance(text, (list, tuple)):
        text = "\n".join(str(x) for x in text)
    units: dict[str, str] = {}
    for line in str(text or "").splitlines():
        m = re.match(r"^/proc/(\d+)/cgroup:(\d+):([^:]*):(.*)$", line.strip())
        if not m:
            continue
        pid, hierarchy, controllers, path = m.groups()
        if not (hierarchy == "0" or "name=systemd" in controllers):
            continue  # v1 controller lines other than the systemd one say nothing about units
        unit = ""
        for part in reversed(path.split("/")):
            if _UNIT.match(part):
                unit = part
                break
        if unit or pid not in units:
            units[pid] = unit
    return units


def listener_pids(listeners: list[dict[str, Any]], ports: Any = None) -> list[int]:
    """Sorted unique pids holding the given ports (all ports when None)."""
    wanted = None if ports is None else {_port_int(p) for p in (ports if isinstance(ports, (list, tuple)) else [ports])}
    pids = {p["pid"] for x in listeners or [] if wanted is None or x["port"] in wanted for p in x["processes"]}
    return sorted(pids)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "ss_listeners": ss_listeners,
            "listeners_on_port": listeners_on_port,
            "listener_reach": listener_reach,
            "listener_pids": listener_pids,
            "proc_cgroup_units": proc_cgroup_units,
        }
