"""Filters that compute where the CosyVoice service listens and how users reach it.

One place for the exposure -> ports/URL logic: the `cosyvoice` role publishes the
result as the fact `cosyvoice_endpoint`, and the proxy, firewall, security-group
and verify layers read it (see docs/CONVENTIONS.md).

    {{ 'direct' | cosyvoice_endpoint(server_port=7860, public_address='203.0.113.7') }}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ansible_collections.cosyvoice.deploy.plugins.module_utils import netshape

EXPOSURES = ("local", "direct", "proxy")
LOOPBACK = "127.0.0.1"
DEFAULT_PORT = 7860


@dataclass(frozen=True)
class Platform:
    """Where the host runs. A container platform's instance is a container: no init system
    of ours, no host firewall or cloud security group to manage, and only the ports the
    platform publishes reach users (through the platform's own proxy or port mapping)."""

    container: bool
    published_ports: tuple[int, ...] = ()  # () = whatever the user publishes in the console
    note: str = ""


#: cosyvoice_platform presets (the one table: README and role docs point here).
PLATFORMS: dict[str, Platform] = {
    "generic": Platform(container=False),
    # AutoDL "custom service" (自定义服务): the platform proxies port 6006 (and 6008 on newer
    # images) of the instance to an HTTPS URL shown in the console.
    "autodl": Platform(
        container=True, published_ports=(6006, 6008),
        note="AutoDL publishes port {port} as its custom service (自定义服务): open the HTTPS link the "
             "console shows for the instance; or tunnel it: ssh -CNg -L {port}:127.0.0.1:{port} root@<ssh host> "
             "-p <ssh port> and open http://127.0.0.1:{port}/"),
    # Other GPU container platforms (RunPod, vast.ai, Xiangong Cloud...): the user publishes a
    # port in the platform's console and uses the URL it shows.
    "container": Platform(
        container=True,
        note="publish port {port} (cosyvoice_server_port, TCP/HTTP) in the platform's console and open the URL it "
             "shows"),
}


try:  # an Ansible error shows as a clean task failure; plain ValueError outside Ansible
    from ansible.errors import AnsibleFilterError as _Base
except ImportError:  # pragma: no cover
    _Base = ValueError  # type: ignore[misc,assignment]


class EndpointError(_Base):  # type: ignore[valid-type,misc]
    """Invalid input; the message names the variable to fix."""


is_ip = netshape.is_ip
is_host = netshape.is_host
is_loopback = netshape.is_loopback
url_host = netshape.url_host


def normalize_root_path(value: Any) -> str:
    text = str(value or "/").strip()
    if any(c in text for c in "?#\\ ") or ".." in text.split("/"):
        raise EndpointError(f"cosyvoice_root_path {value!r}: use a plain URL path such as /tts")
    parts = [p for p in text.split("/") if p]
    return "/" + "/".join(parts) if parts else "/"


def build_url(scheme: str, host: str, port: int | None, path: str = "/") -> str:
    """http://h:7860/x/ ; the default port for the scheme is left out."""
    default = {"http": 80, "https": 443}.get(scheme)
    netloc = url_host(host) if port in (None, default) else f"{url_host(host)}:{port}"
    path = path if path.endswith("/") else path + "/"
    return f"{scheme}://{netloc}{path}"


def _port(value: Any, name: str) -> int:
    port = netshape.port_number(value)
    if port is not None:
        return port
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise EndpointError(f"{name} must be a port number, got {value!r}") from None
    if netshape.port_number(number) is None:
        raise EndpointError(f"{name} must be within 1-65535, got {number}")
    return number


def cosyvoice_endpoint(
    exposure: str,
    server_port: Any = 7860,
    public_address: str | None = None,
    bind_address: str | None = None,
    root_path: Any = "/",
    proxy_http_port: Any = 80,
    proxy_https_port: Any = 443,
    auth: bool = False,
    health_leaf: str = "healthz",
    platform: str = "generic",
) -> dict[str, Any]:
    """The service's endpoint description for an exposure mode (see module doc)."""
    if exposure not in EXPOSURES:
        raise EndpointError(f"cosyvoice_exposure must be one of {', '.join(EXPOSURES)}, got {exposure!r}")
    if platform not in PLATFORMS:
        raise EndpointError(f"cosyvoice_platform must be one of {', '.join(PLATFORMS)}, got {platform!r}")
    plat = PLATFORMS[platform]
    if server_port in (None, "", "auto"):
        server_port = plat.published_ports[0] if plat.published_ports else DEFAULT_PORT
    backend_port = _port(server_port, "cosyvoice_server_port")
    if plat.container and exposure == "proxy":
        raise EndpointError(
            f"cosyvoice_exposure=proxy on cosyvoice_platform={platform}: the platform's own proxy is the front "
            "(HTTPS, its URL), and this container runs no nginx of ours. Use cosyvoice_exposure=direct (with "
            "cosyvoice_auth_users for a login), or cosyvoice_platform=generic on a VM.")
    if plat.published_ports and exposure == "direct" and backend_port not in plat.published_ports:
        raise EndpointError(
            f"cosyvoice_server_port is {backend_port}, but cosyvoice_platform={platform} only publishes port(s) "
            f"{', '.join(map(str, plat.published_ports))}: users could not reach {backend_port}. Leave "
            f"cosyvoice_server_port unset (auto: {plat.published_ports[0]}) or set one of those.")
    root = normalize_root_path(root_path)
    if not bind_address:
        bind_address = "0.0.0.0" if exposure == "direct" else LOOPBACK
    if not is_host(bind_address):
        raise EndpointError(f"cosyvoice_server_name {bind_address!r} is neither an IP address nor a hostname")
    if exposure == "direct" and is_loopback(bind_address):
        raise EndpointError(
            f"cosyvoice_server_name is {bind_address} with cosyvoice_exposure=direct: nobody else could connect "
            "(the 0.0.0.0 pitfall). Use 0.0.0.0 (or this host's address), or cosyvoice_exposure=proxy/local."
        )
    if exposure in ("local", "proxy") and not is_loopback(bind_address):
        raise EndpointError(
            f"cosyvoice_server_name is {bind_address} with cosyvoice_exposure={exposure}: the app must listen on "
            "127.0.0.1 only, so it cannot be reached around the proxy. Leave cosyvoice_server_name unset."
        )
    public_address = public_address or (LOOPBACK if exposure == "local" else None)
    if public_address is not None and not is_host(str(public_address)):
        raise EndpointError(f"cosyvoice_public_address {public_address!r} is neither an IP address nor a hostname")

    ports: list[dict[str, Any]]
    if exposure == "direct":
        scheme, public_port = "http", backend_port
        ports = [{"port": backend_port, "proto": "tcp", "purpose": "app"}]
    elif exposure == "proxy":
        http_port = _port(proxy_http_port, "cosyvoice_proxy_http_port")
        https_port = _port(proxy_https_port, "cosyvoice_proxy_https_port")
        if backend_port in (http_port, https_port):
            raise EndpointError(
                f"cosyvoice_server_port {backend_port} collides with the proxy's port; nginx and the app cannot share it"
            )
        scheme, public_port = "https", https_port
        ports = [
            {"port": http_port, "proto": "tcp", "purpose": "http"},
            {"port": https_port, "proto": "tcp", "purpose": "https"},
        ]
    else:
        scheme, public_port, ports = "http", backend_port, []

    health_path = ("" if root == "/" else root) + "/" + health_leaf
    return {
        "exposure": exposure,
        "bind_address": bind_address,
        "backend_port": backend_port,
        "public_ports": ports,
        "public_address": public_address,
        "scheme": scheme,
        "public_port": public_port if exposure != "local" else None,
        "root_path": root,
        "url": build_url(scheme, public_address, public_port, root) if public_address else None,
        "backend_url": build_url("http", LOOPBACK if bind_address in ("0.0.0.0", "::") else bind_address,
                                 backend_port, root),
        "health_path": health_path,
        "auth": bool(auth),
        "platform": {"name": platform, "container": plat.container,
                     "published_ports": list(plat.published_ports), "note": plat.note.format(port=backend_port)},
    }


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "cosyvoice_endpoint": cosyvoice_endpoint,
            "cosyvoice_url": build_url,
            "cosyvoice_url_host": url_host,
            "cosyvoice_root_path": normalize_root_path,
            "cosyvoice_is_host": is_host,
            "cosyvoice_is_loopback": is_loopback,
        }
