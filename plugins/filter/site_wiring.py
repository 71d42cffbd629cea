# -*- coding: utf-8 -*-
# Copyright: cosyvoice-deploy maintainers
# Apache License 2.0
"""How site.yml wires the layers: the one table of derived role variables.

Every layer's inputs that follow from the service's endpoint (the cosyvoice role's
fact ``cosyvoice_endpoint``) are computed here, once per host, by
playbooks/tasks/wiring.yml (run by the preflight play and by diagnose.yml):

    {{ cosyvoice_endpoint | cosyvoice.deploy.site_wiring(hostvars[inventory_hostname], ...) }}
    -> {"values": {"os_firewall_allowed_ports": [...], ...}, "problems": [...], "overridden": [...]}

A variable marked ``settable`` may be set in the inventory (or with -e): that value
wins, and is checked against the endpoint (a port list must still contain the
endpoint's public ports). Any other wired variable found in the inventory is a
mistake (it would be silently replaced): it is reported as a problem naming the
cosyvoice_* variable to set instead, and the preflight fails before any change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ansible_collections.cosyvoice.deploy.plugins.filter.nginx_proxy import server_name_problems
from ansible_collections.cosyvoice.deploy.plugins.module_utils import netshape

#: A derive function returns this when the variable is not wired for this host (the role's default applies).
UNWIRED = object()


@dataclass(frozen=True)
class Wire:
    derive: Callable[[Mapping[str, Any], Mapping[str, Any]], Any]
    instead: str  # what to set in the inventory instead (derived-only) / what it derives from
    settable: bool = False
    check: Callable[[Any, Mapping[str, Any]], str] | None = None  # settable: '' or the problem
    secret: bool = False  # never echo the value in a message


def _public(ep: Mapping[str, Any], purpose: str, default: int) -> int:
    ports = {p.get("purpose"): int(p["port"]) for p in ep.get("public_ports", []) if isinstance(p, Mapping)}
    return ports.get(purpose, default)


def _server_names(ep: Mapping[str, Any], ctx: Mapping[str, Any]) -> list[str]:
    names = [ep.get("public_address")]
    host = ctx.get("inventory_hostname")
    if host and not server_name_problems([host]):
        names.append(host)
    return list(dict.fromkeys(n for n in names if n))


def _ports_cover_endpoint(value: Any, ep: Mapping[str, Any]) -> str:
    if not isinstance(value, list):
        return "must be a list of {port, proto}"
    have = {(str(p.get("port")), p.get("proto", "tcp")) for p in value if isinstance(p, Mapping)}
    missing = [f"{p['port']}/{p.get('proto', 'tcp')}" for p in ep.get("public_ports", [])
               if (str(p["port"]), p.get("proto", "tcp")) not in have]
    return f"lacks {', '.join(missing)}, which cosyvoice_endpoint needs open" if missing else ""


def _instances(ep: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [x for x in ep.get("instances") or [] if isinstance(x, Mapping)]


def _remote_upstreams(ep: Mapping[str, Any], ctx: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The backends' instances a front balances: [{host, address, port, name}] (hosts missing from the run: none)."""
    out = []
    for host in ep.get("upstream_hosts") or []:
        other = (ctx.get("fleet") or {}).get(host) or {}
        for x in other.get("instances") or []:
            out.append({"host": host, "address": other.get("private_address") or other.get("public_address"),
                        "port": int(x["port"]), "name": x.get("name", "")})
    return out


def _upstream_servers(ep: Mapping[str, Any], ctx: Mapping[str, Any]) -> list[str]:
    """Several instances, or backends on other hosts: nginx balances them (one: the plain upstream host:port)."""
    local = [f"127.0.0.1:{int(x['port'])}" for x in _instances(ep)]
    remote = [f"{netshape.url_host(str(x['address']))}:{x['port']}" for x in _remote_upstreams(ep, ctx)]
    return local + remote if len(local) + len(remote) > 1 else []


def _front_cidrs(ep: Mapping[str, Any], ctx: Mapping[str, Any]) -> Any:
    """A backend admits its front proxy host(s) only (other exposures: the role's own default)."""
    if ep.get("exposure") != "backend":
        return UNWIRED
    out = []
    for host in ep.get("front_hosts") or []:
        address = str(((ctx.get("fleet") or {}).get(host) or {}).get("private_address") or "")
        if netshape.is_ip(address):
            out.append(f"{address}/{128 if ':' in address else 32}")
    return out


def _front_cidrs_v6(ep: Mapping[str, Any], ctx: Mapping[str, Any]) -> Any:
    cidrs = _front_cidrs(ep, ctx)
    return UNWIRED if cidrs is UNWIRED else [c for c in cidrs if ":" in c]


def _front_cidrs_v4(ep: Mapping[str, Any], ctx: Mapping[str, Any]) -> Any:
    cidrs = _front_cidrs(ep, ctx)
    return UNWIRED if cidrs is UNWIRED else [c for c in cidrs if ":" not in c]


def fleet_problems(ep: Mapping[str, Any], ctx: Mapping[str, Any]) -> list[str]:
    """What is inconsistent between this host and the hosts it balances or is balanced by."""
    me = ctx.get("inventory_hostname", "")
    fleet = ctx.get("fleet") or {}
    problems = []
    for host in ep.get("upstream_hosts") or []:
        other = fleet.get(host) or {}
        if not other.get("instances"):
            problems.append(f"cosyvoice_upstream_hosts names {host}, which is not part of this run (or not in the "
                            "inventory): the front's upstream list comes from each backend's endpoint. Run the fleet "
                            f"together (--limit {me},{host}).")
        elif other.get("exposure") != "backend":
            problems.append(f"cosyvoice_upstream_hosts names {host}, but {host} runs cosyvoice_exposure="
                            f"{other.get('exposure')}: set cosyvoice_exposure: backend (and cosyvoice_front_hosts: "
                            f"[{me}]) for it.")
        elif me not in (other.get("front_hosts") or []):
            problems.append(f"cosyvoice_upstream_hosts names {host}, but {host} does not list {me} in "
                            f"cosyvoice_front_hosts: its firewall would drop this front's connections.")
    for host in ep.get("front_hosts") or []:
        address = str((fleet.get(host) or {}).get("private_address") or "")
        if not address:
            problems.append(f"cosyvoice_front_hosts names {host}, whose address is not known in this run: run it "
                            f"together with its backends, or set cosyvoice_private_address for {host} in the inventory.")
        elif not netshape.is_ip(address):
            problems.append(f"cosyvoice_front_hosts names {host}, whose cosyvoice_private_address {address!r} is not "
                            f"an IP address: set it to the address {me} sees the front's connections come from.")
    return problems


def cosyvoice_rollout_targets(endpoint: Mapping[str, Any], inventory_hostname: str) -> list[dict[str, Any]]:
    """Where a host is balanced, for a rolling update: [{front, servers}] - the front proxy host(s) of a
    backend with its instances there; the host itself for its own instances behind its own nginx when it
    balances more than one server; [] when nothing balances it (it is updated in place)."""
    members = _instances(endpoint)
    if endpoint.get("exposure") == "backend":
        address = netshape.url_host(str(endpoint.get("private_address") or endpoint.get("public_address")))
        servers = [f"{address}:{int(x['port'])}" for x in members]
        return [{"front": str(f), "servers": servers} for f in endpoint.get("front_hosts") or []]
    if endpoint.get("exposure") == "proxy" and (len(members) > 1 or endpoint.get("upstream_hosts")):
        return [{"front": inventory_hostname, "servers": [f"127.0.0.1:{int(x['port'])}" for x in members]}]
    return []


def cosyvoice_rollout_fronts(targets: Any) -> list[dict[str, Any]]:
    """The rollout targets of a batch's hosts, merged per front: one drain per front and batch."""
    merged: dict[str, list[str]] = {}
    for t in targets or []:
        if isinstance(t, Mapping) and t.get("front"):
            merged.setdefault(str(t["front"]), []).extend(str(x) for x in t.get("servers") or [])
    return [{"front": f, "servers": list(dict.fromkeys(servers))} for f, servers in merged.items()]


def cosyvoice_fleet(names: Any, hostvars: Any) -> dict[str, Any]:
    """{name: what this host needs to know of it} for the fleet hosts it names: the endpoint when the host
    is part of the run, else the private address from the inventory (or nothing)."""
    out: dict[str, Any] = {}
    for name in dict.fromkeys(str(n) for n in names or []):
        try:
            hv = hostvars[name]
        except (KeyError, TypeError):
            continue
        ep = hv.get("cosyvoice_endpoint") if hasattr(hv, "get") else None
        if isinstance(ep, Mapping):
            out[name] = {k: ep.get(k) for k in ("exposure", "private_address", "public_address", "instances",
                                                "front_hosts")}
        elif hasattr(hv, "get") and hv.get("cosyvoice_private_address"):
            out[name] = {"private_address": hv.get("cosyvoice_private_address")}
    return out


def _app_unit(ep: Mapping[str, Any], ctx: Mapping[str, Any]) -> str:
    members = _instances(ep)
    return str(members[0]["name"]) if members else ctx["service_name"]


def _container(ep: Mapping[str, Any]) -> bool:
    return bool((ep.get("platform") or {}).get("container"))


def _none_on_a_container(value: Any, ep: Mapping[str, Any]) -> str:
    if _container(ep) and value != "none":
        name = (ep.get("platform") or {}).get("name", "?")
        return (f"is {value!r}, but cosyvoice_platform={name} is a container: the platform owns the network "
                "in front of it and there is no host firewall of ours to manage (set it to none)")
    return ""


#: Every wired variable: how it is derived, and what a user sets instead.
WIRING: dict[str, Wire] = {
    # Reverse proxy (playbooks/proxy.yml): deployed in proxy mode, removed otherwise.
    "nginx_proxy_enabled": Wire(lambda ep, c: ep["exposure"] == "proxy", "cosyvoice_exposure"),
    "nginx_proxy_upstream_host": Wire(lambda ep, c: "127.0.0.1", "cosyvoice_exposure"),
    "nginx_proxy_upstream_port": Wire(lambda ep, c: int(ep["backend_port"]), "cosyvoice_server_port"),
    "nginx_proxy_upstream_servers": Wire(_upstream_servers, "cosyvoice_instances / cosyvoice_upstream_hosts"),
    "nginx_proxy_https_port": Wire(lambda ep, c: _public(ep, "https", c["proxy_https_port"]), "cosyvoice_proxy_https_port"),
    "nginx_proxy_http_port": Wire(lambda ep, c: _public(ep, "http", c["proxy_http_port"]), "cosyvoice_proxy_http_port"),
    "nginx_proxy_location": Wire(lambda ep, c: ep["root_path"], "cosyvoice_root_path"),
    "nginx_proxy_health_path": Wire(lambda ep, c: ep["health_path"], "cosyvoice_root_path"),
    "nginx_proxy_server_names": Wire(_server_names, "cosyvoice_public_address", settable=True),
    "nginx_proxy_auth_enabled": Wire(lambda ep, c: bool(ep["auth"]), "cosyvoice_auth_users"),
    "nginx_proxy_auth_users": Wire(lambda ep, c: list(c["auth_users"]), "cosyvoice_auth_users", secret=True),
    # Host firewall and cloud security group: exactly the public ports.
    # A fleet's backend admits its front proxy host(s) only.
    "os_firewall_allowed_cidrs": Wire(_front_cidrs, "cosyvoice_front_hosts", settable=True),
    "cloud_security_group_cidrs": Wire(_front_cidrs_v4, "cosyvoice_front_hosts", settable=True),
    "cloud_security_group_cidrs_ipv6": Wire(_front_cidrs_v6, "cosyvoice_front_hosts", settable=True),
    "os_firewall_allowed_ports": Wire(lambda ep, c: list(ep["public_ports"]), "cosyvoice_exposure",
                                      settable=True, check=_ports_cover_endpoint),
    "cloud_security_group_ports": Wire(lambda ep, c: list(ep["public_ports"]), "cosyvoice_exposure",
                                       settable=True, check=_ports_cover_endpoint),
    # Container platforms (cosyvoice_platform): no host firewall to manage, nothing to judge its posture by.
    "os_firewall_backend": Wire(lambda ep, c: "none" if _container(ep) else c["firewall_backend"], "cosyvoice_platform",
                                settable=True, check=_none_on_a_container),
    "verify_firewall_posture": Wire(lambda ep, c: "off" if _container(ep) else c["firewall_posture"],
                                    "cosyvoice_platform", settable=True),
    # Verification.
    "verify_process_manager": Wire(lambda ep, c: c["process_manager"], "cosyvoice_process_manager"),
    "verify_endpoint": Wire(lambda ep, c: dict(ep), "cosyvoice_exposure"),
    "verify_service_name": Wire(_app_unit, "cosyvoice_service_name"),
    "verify_auth_users": Wire(lambda ep, c: list(c["auth_users"]), "cosyvoice_auth_users", secret=True),
    "verify_report_dir": Wire(lambda ep, c: c["report_dir"], "the project's reports/ folder", settable=True),
    "verify_service_user": Wire(lambda ep, c: c["service_user"], "cosyvoice_user"),
    # A fleet: a backend is checked from its (first) front proxy host; a front checks its backends.
    "verify_remote_from": Wire(lambda ep, c: (ep.get("front_hosts") or ["localhost"])[0], "cosyvoice_front_hosts"),
    "verify_upstreams": Wire(_remote_upstreams, "cosyvoice_upstream_hosts"),
    "verify_allowed_dropins": Wire(lambda ep, c: list(c["dropins_keep"]), "cosyvoice_systemd_dropins_keep"),
}


def site_wiring(
    endpoint: Mapping[str, Any],
    host_vars: Mapping[str, Any],
    inventory_hostname: str = "",
    service_name: str = "cosyvoice",
    auth_users: list[Any] | None = None,
    report_dir: str = "reports",
    proxy_http_port: int = 80,
    proxy_https_port: int = 443,
    wired_before: Mapping[str, Any] | None = None,
    service_user: str = "",
    dropins_keep: list[str] | None = None,
    process_manager: str = "systemd",
    firewall_backend: str = "auto",
    firewall_posture: str = "fail",
    fleet: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The wired values for one host, the inventory overrides taken, and the problems found.

    `host_vars` is hostvars[inventory_hostname]: inventory and extra vars and facts, never
    play or role variables. `wired_before` is what an earlier wiring in the same run set as
    facts (those are not user input).
    """
    ctx = {"inventory_hostname": inventory_hostname, "service_name": service_name,
           "auth_users": auth_users or [], "report_dir": report_dir,
           "proxy_http_port": int(proxy_http_port), "proxy_https_port": int(proxy_https_port),
           "service_user": service_user, "dropins_keep": dropins_keep or [],
           "process_manager": process_manager, "firewall_backend": firewall_backend,
           "firewall_posture": firewall_posture, "fleet": dict(fleet or {})}
    before = dict(wired_before or {})
    values: dict[str, Any] = {}
    problems: list[str] = fleet_problems(endpoint, ctx)
    overridden: list[str] = []
    for name, wire in WIRING.items():
        derived = wire.derive(endpoint, ctx)
        if derived is UNWIRED:
            continue
        user_set = name in host_vars and not (name in before and host_vars[name] == before[name])
        if not user_set:
            values[name] = derived
        elif wire.settable:
            value = host_vars[name]
            problem = wire.check(value, endpoint) if wire.check else ""
            if problem:
                problems.append(f"{name} (set in the inventory) {problem}. Fix it, or remove it to let site.yml "
                                f"derive it from {wire.instead}.")
            values[name] = value
            overridden.append(name)
        else:
            shown = "" if wire.secret else f" (it would be {derived!r} here)"
            problems.append(f"{name} is set in the inventory, but site.yml derives it from {wire.instead}{shown}. "
                            f"Remove {name} and set {wire.instead} instead.")
    return {"values": values, "problems": problems, "overridden": overridden}


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"site_wiring": site_wiring, "cosyvoice_fleet": cosyvoice_fleet,
                "cosyvoice_rollout_targets": cosyvoice_rollout_targets,
                "cosyvoice_rollout_fronts": cosyvoice_rollout_fronts}
