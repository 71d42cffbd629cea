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


def _upstream_servers(ep: Mapping[str, Any], ctx: Mapping[str, Any]) -> list[str]:
    """Several instances: nginx balances them (one: the plain upstream host:port)."""
    members = _instances(ep)
    return [f"127.0.0.1:{int(x['port'])}" for x in members] if len(members) > 1 else []


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
    "nginx_proxy_upstream_servers": Wire(_upstream_servers, "cosyvoice_instances"),
    "nginx_proxy_https_port": Wire(lambda ep, c: _public(ep, "https", c["proxy_https_port"]), "cosyvoice_proxy_https_port"),
    "nginx_proxy_http_port": Wire(lambda ep, c: _public(ep, "http", c["proxy_http_port"]), "cosyvoice_proxy_http_port"),
    "nginx_proxy_location": Wire(lambda ep, c: ep["root_path"], "cosyvoice_root_path"),
    "nginx_proxy_health_path": Wire(lambda ep, c: ep["health_path"], "cosyvoice_root_path"),
    "nginx_proxy_server_names": Wire(_server_names, "cosyvoice_public_address", settable=True),
    "nginx_proxy_auth_enabled": Wire(lambda ep, c: bool(ep["auth"]), "cosyvoice_auth_users"),
    "nginx_proxy_auth_users": Wire(lambda ep, c: list(c["auth_users"]), "cosyvoice_auth_users", secret=True),
    # Host firewall and cloud security group: exactly the public ports.
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
           "firewall_posture": firewall_posture}
    before = dict(wired_before or {})
    values: dict[str, Any] = {}
    problems: list[str] = []
    overridden: list[str] = []
    for name, wire in WIRING.items():
        derived = wire.derive(endpoint, ctx)
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
        return {"site_wiring": site_wiring}
