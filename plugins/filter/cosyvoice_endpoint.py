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

EXPOSURES = ("local", "direct", "proxy", "backend")
#: Exposures whose app is reached by nginx (its own, or a front proxy's on another host).
BALANCED = ("proxy", "backend")
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


_INSTANCES_FORMS = ("auto, a number of instances (3), a list of GPU indexes ([0, 1, 1]) or a list of "
                    "{gpu, port} ([{gpu: 0, port: 7860}, {port: 7861}])")


def _instance_spec(value: Any) -> tuple[str, Any]:
    """cosyvoice_instances -> ('auto', None) | ('count', n) | ('gpus', [ids]) | ('items', [{gpu, port}])."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "auto")):
        return "auto", None
    if isinstance(value, bool):
        raise EndpointError(f"cosyvoice_instances must be {_INSTANCES_FORMS}; got {value!r}")
    if isinstance(value, int) or (isinstance(value, str) and value.strip().lstrip("-").isdigit()):
        return "count", int(value)
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(x, dict) for x in value):
            for x in value:
                unknown = sorted(set(map(str, x)) - {"gpu", "port"})
                if unknown:
                    raise EndpointError(f"cosyvoice_instances: an entry has unknown key(s) {', '.join(unknown)}; "
                                        "each entry may set gpu and port only")
            return "items", [dict(x) for x in value]
        if value and all(isinstance(x, int) and not isinstance(x, bool) or str(x).isdigit() for x in value):
            return "gpus", [int(x) for x in value]
        if not value:
            return "count", 0
    raise EndpointError(f"cosyvoice_instances must be {_INSTANCES_FORMS}; got {value!r}")


def resolve_instances(
    value: Any,
    exposure: str,
    backend_port: int,
    service_name: str = "cosyvoice",
    gpu_count: Any = None,
    needs_gpu: bool = True,
    cuda_visible_devices: Any = "",
    reserved_ports: tuple[int, ...] = (),
    single_only: str = "",
) -> list[dict[str, Any]]:
    """The service's instances: [{index, name, port, gpu}], one process each.

    One instance keeps the plain service name and cosyvoice_server_port; N > 1 are
    <service>-0..N-1 on consecutive ports from cosyvoice_server_port (or the listed ones), each
    pinned to its GPU (CUDA_VISIBLE_DEVICES). `gpu_count` is the number of NVIDIA GPUs found
    on the host (None: not known); `single_only` names why this host runs one instance only.
    """
    kind, spec = _instance_spec(value)
    gpus_known = gpu_count not in (None, "") and str(gpu_count).isdigit()
    gpus = int(gpu_count) if gpus_known else None
    if kind == "auto":
        count = gpus if (exposure in BALANCED and needs_gpu and gpus and not single_only) else 1
        items: list[dict[str, Any]] = [{"gpu": i if count > 1 else None} for i in range(count)]
    elif kind == "count":
        if spec < 1:
            raise EndpointError(f"cosyvoice_instances is {spec}: at least 1 instance is needed (auto: one per GPU)")
        if needs_gpu and spec > 1 and gpus is not None and spec > gpus:
            raise EndpointError(
                f"cosyvoice_instances is {spec}, but {gpus} NVIDIA GPU(s) were detected on this host: each instance "
                "needs its own GPU. Lower it (or leave it auto: one per GPU); to share GPUs deliberately, list them, "
                f"e.g. cosyvoice_instances: {[i % max(gpus, 1) for i in range(spec)]}"
                + ("" if gpus else ", or run CPU instances with cosyvoice_instances: [{port: ...}, ...]"))
        pin = needs_gpu and spec > 1 and (gpus is None or gpus > 0)
        items = [{"gpu": i if pin else None} for i in range(spec)]
    elif kind == "gpus":
        if gpus is not None and needs_gpu:
            missing = sorted({g for g in spec if g >= gpus})
            if missing:
                raise EndpointError(
                    f"cosyvoice_instances lists GPU(s) {', '.join(map(str, missing))}, but {gpus} NVIDIA GPU(s) were "
                    f"detected on this host (indexes 0-{gpus - 1}): list existing GPUs only")
        items = [{"gpu": g} for g in spec]
    else:
        items = []
        for x in spec:
            gpu = x.get("gpu")
            if gpu is not None and (isinstance(gpu, bool) or not str(gpu).isdigit()):
                raise EndpointError(f"cosyvoice_instances: gpu must be a GPU index (0, 1, ...), got {gpu!r}")
            items.append({"gpu": None if gpu is None else int(gpu), "port": x.get("port")})
    count = len(items)
    if count > 1 and single_only:
        raise EndpointError(f"cosyvoice_instances asks for {count} instances, but {single_only}. "
                            "Set cosyvoice_instances: 1 (or auto).")
    if count > 1 and exposure not in BALANCED:
        raise EndpointError(
            f"cosyvoice_instances asks for {count} instances with cosyvoice_exposure={exposure}: users would need "
            f"{count} ports. Several instances run behind nginx (cosyvoice_exposure: proxy, or backend behind a "
            "front proxy host), which balances them under one URL; or set cosyvoice_instances: 1.")
    if count > 1 and str(cuda_visible_devices or "").strip():
        raise EndpointError(
            "cosyvoice_cuda_visible_devices is set together with several cosyvoice_instances: each instance gets "
            "its own GPU from cosyvoice_instances (e.g. [0, 1]); remove cosyvoice_cuda_visible_devices.")
    out: list[dict[str, Any]] = []
    seen: dict[int, int] = {}
    for i, item in enumerate(items):
        explicit = item.get("port")
        port = _port(explicit, f"cosyvoice_instances[{i}].port") if explicit not in (None, "") else backend_port + i
        if i == 0 and port != backend_port:
            raise EndpointError(f"cosyvoice_instances: the first instance listens on cosyvoice_server_port "
                                f"({backend_port}), not {port}: set cosyvoice_server_port: {port} instead")
        if port > 65535:
            raise EndpointError(f"cosyvoice_instances: instance {i} would listen on port {port} "
                                f"(cosyvoice_server_port {backend_port} + {i}): lower cosyvoice_server_port")
        if port in seen:
            raise EndpointError(f"cosyvoice_instances: port {port} is given to instances {seen[port]} and {i}; "
                                "each instance needs its own port")
        if port in reserved_ports:
            raise EndpointError(f"cosyvoice_instances: instance {i} would listen on port {port}, which nginx uses "
                                "(cosyvoice_proxy_http_port / cosyvoice_proxy_https_port): choose other ports")
        seen[port] = i
        gpu = item.get("gpu")
        if count == 1 and gpu is None:
            gpu_text = str(cuda_visible_devices or "").strip()
        else:
            gpu_text = "" if gpu is None else str(gpu)
        out.append({"index": i, "name": service_name if count == 1 else f"{service_name}-{i}", "port": port,
                    "gpu": gpu_text})
    return out


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
    instances: Any = 1,
    gpu_count: Any = None,
    needs_gpu: bool = True,
    service_name: str = "cosyvoice",
    cuda_visible_devices: Any = "",
    process_manager: str = "systemd",
    private_address: str | None = None,
    front_hosts: Any = (),
    upstream_hosts: Any = (),
) -> dict[str, Any]:
    """The service's endpoint description for an exposure mode (see module doc).

    A fleet: `backend` hosts serve their instances on a non-loopback address to the front proxy
    host(s) named in `front_hosts` (inventory names) only; a `proxy` host that lists backends in
    `upstream_hosts` balances their instances next to its own. `private_address` is the address
    other hosts of the fleet reach this one on (a backend's URL, a front's source address).
    """
    if exposure not in EXPOSURES:
        raise EndpointError(f"cosyvoice_exposure must be one of {', '.join(EXPOSURES)}, got {exposure!r}")
    if platform not in PLATFORMS:
        raise EndpointError(f"cosyvoice_platform must be one of {', '.join(PLATFORMS)}, got {platform!r}")
    plat = PLATFORMS[platform]
    if server_port in (None, "", "auto"):
        server_port = plat.published_ports[0] if plat.published_ports else DEFAULT_PORT
    backend_port = _port(server_port, "cosyvoice_server_port")
    fronts = [str(x) for x in front_hosts or []]
    upstreams = [str(x) for x in upstream_hosts or []]
    if exposure == "backend" and not fronts:
        raise EndpointError(
            "cosyvoice_exposure=backend needs cosyvoice_front_hosts: the inventory name(s) of the front proxy host(s) "
            "that balance this host; only they may connect to its ports.")
    if fronts and exposure != "backend":
        raise EndpointError(f"cosyvoice_front_hosts is set with cosyvoice_exposure={exposure}: it belongs to "
                            "cosyvoice_exposure: backend hosts. Remove it, or set cosyvoice_exposure: backend.")
    if upstreams and exposure != "proxy":
        raise EndpointError(f"cosyvoice_upstream_hosts is set with cosyvoice_exposure={exposure}: only a front proxy "
                            "(cosyvoice_exposure: proxy) balances other hosts. Remove it, or set cosyvoice_exposure: proxy.")
    if private_address is not None and str(private_address) and not is_host(str(private_address)):
        raise EndpointError(f"cosyvoice_private_address {private_address!r} is neither an IP address nor a hostname")
    if plat.container and exposure in BALANCED:
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
        bind_address = "0.0.0.0" if exposure in ("direct", "backend") else LOOPBACK
    if not is_host(bind_address):
        raise EndpointError(f"cosyvoice_server_name {bind_address!r} is neither an IP address nor a hostname")
    if exposure == "backend" and is_loopback(bind_address):
        raise EndpointError(
            f"cosyvoice_server_name is {bind_address} with cosyvoice_exposure=backend: the front proxy host could "
            "not connect. Leave it unset (0.0.0.0; the firewall admits the front proxy only) or use this host's "
            "private address.")
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
    if exposure == "backend":
        public_address = private_address or public_address
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
    else:  # local; backend: the instances' ports, once they are known (below)
        scheme, public_port, ports = "http", backend_port, []

    single_only = ""
    if plat.container:
        single_only = f"cosyvoice_platform={platform} publishes one port for one process"
    elif process_manager != "systemd":
        single_only = f"this host runs the service under {process_manager} (several instances need systemd)"
    reserved = tuple(p["port"] for p in ports) if exposure == "proxy" else ()
    members = resolve_instances(instances, exposure, backend_port, service_name=service_name, gpu_count=gpu_count,
                                needs_gpu=needs_gpu, cuda_visible_devices=cuda_visible_devices,
                                reserved_ports=reserved, single_only=single_only)

    if exposure == "backend":
        ports = [{"port": m["port"], "proto": "tcp", "purpose": "backend"} for m in members]
    local_host = LOOPBACK if bind_address in ("0.0.0.0", "::") else bind_address
    for member in members:
        member["backend_url"] = build_url("http", local_host, member["port"], root)

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
        "backend_url": build_url("http", local_host, backend_port, root),
        "health_path": health_path,
        # A backend asks for no login: its front proxy does.
        "auth": bool(auth) and exposure != "backend",
        "private_address": str(private_address or public_address or ""),
        "front_hosts": fronts,
        "upstream_hosts": upstreams,
        "platform": {"name": platform, "container": plat.container,
                     "published_ports": list(plat.published_ports), "note": plat.note.format(port=backend_port)},
        "instances": members,
    }


def instance_units(instances: list[dict[str, Any]], service_name: str = "cosyvoice", watchdog: bool = True,
                   scheduled_restart: bool = False) -> list[dict[str, Any]]:
    """The watchdog (one per instance) and planned-restart (one per host) units: [{src, dest, enabled, instance}]."""
    units = [{"src": f"watchdog.{kind}.j2", "dest": f"{inst['name']}-watchdog.{kind}", "enabled": bool(watchdog),
              "instance": inst} for inst in instances for kind in ("service", "timer")]
    first = instances[0] if instances else {}
    units += [{"src": f"scheduled-restart.{kind}.j2", "dest": f"{service_name}-scheduled-restart.{kind}",
               "enabled": bool(scheduled_restart), "instance": first} for kind in ("service", "timer")]
    return units


def service_units(instances: list[dict[str, Any]], template: str = "cosyvoice.service.j2") -> list[dict[str, Any]]:
    """The service unit of each instance, in the shape of instance_units: [{src, dest, enabled, instance}]."""
    return [{"src": template, "dest": f"{inst['name']}.service", "enabled": True, "instance": inst}
            for inst in instances]


def unit_files(units: list[dict[str, Any]], unit_dir: str = "/etc/systemd/system",
               instance_var: str = "__cosyvoice_instance", validate: str | None = None) -> list[dict[str, Any]]:
    """cosyvoice.deploy.host_files entries for instance_units or service_units: enabled ones rendered
    from their template (the instance passed as instance_var; validate with {unit} for the unit's
    name), disabled ones absent."""
    files = []
    for unit in units:
        path = f"{unit_dir}/{unit['dest']}"
        if not unit["enabled"]:
            files.append({"path": path, "state": "absent"})
            continue
        entry = {"path": path, "state": "file", "template": unit["src"], "mode": "0644",
                 "template_vars": {instance_var: unit["instance"]}}
        if validate:
            entry["validate"] = validate.replace("{unit}", unit["dest"])
        files.append(entry)
    return files


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "cosyvoice_endpoint": cosyvoice_endpoint,
            "cosyvoice_instances": resolve_instances,
            "cosyvoice_instance_units": instance_units,
            "cosyvoice_unit_files": unit_files,
            "cosyvoice_service_units": service_units,
            "cosyvoice_url": build_url,
            "cosyvoice_url_host": url_host,
            "cosyvoice_root_path": normalize_root_path,
            "cosyvoice_is_host": is_host,
            "cosyvoice_is_loopback": is_loopback,
        }
