"""Decide which layer breaks CosyVoice's reachability, and say why and how to fix it.

The verify role collects evidence (systemd state, `ss` listeners, firewall and
security-group status, requests from the controller) and hands it to

    {{ evidence | cosyvoice_diagnose }}          -> diagnosis dict (also the JSON report)
    {{ diagnosis | cosyvoice_diagnosis_text }}   -> the readable report
    {{ diagnosis | cosyvoice_diagnosis_json }}   -> the JSON report (stable key order)

and, to turn raw output into evidence:

    {{ systemctl_show.stdout | systemctl_properties }}       -> {"ActiveState": "active", ...}
    {{ systemctl_show.stdout | systemctl_properties_list }}  -> one dict per unit shown
    {{ probe.stdout | verify_sections(names) }}              -> {"ss": "...", ...} ('### name' sections)
    {{ "200 OK" | verify_health_line(url) }}                 -> {url, status, ok, msg}
    {{ uri_or_wait_for_result | cosyvoice_probe_summary }}   -> {port, ok, status, msg, url} (no request data)

Layers are judged in the seed article's troubleshooting order; the first one
that fails is *the* diagnosis, every other finding is listed in the report:

 1 service         not running / crashed            页面完全打不开 -> 服务未启动
 2 bind            bound to loopback / wrong port   只能本机访问 -> server_name 错误
 3 port_conflict   port held by another process     提示"拒绝连接" -> 端口被占用 (lsof -i :7860)
 4 os_firewall     host firewall drops the port     显示"连接超时" -> 防火墙未放行
 5 security_group  cloud security group             显示"连接超时" -> 安全组未放行
 6 client          client URL / port / routing      客户端网络无法路由到目标IP / 端口一致性
 7 tls             certificate not trusted          (生产环境: 反向代理 + HTTPS)
 8 auth            login missing or refused         (生产环境: 启用登录认证)
 9 http            proxy upstream / app errors

One exception to the order: when another process holds the service's port
*and* the service is down, the conflict is named (it is why the service
crashed: the seed's "端口被占用或服务崩溃").

Evidence (every key optional; missing evidence makes its checks "skip"):

    endpoint:        the cosyvoice_endpoint fact (docs/CONVENTIONS.md)
    service:         {unit, properties: systemctl show ..., journal: [last lines]}
    proxy_service:   same for nginx (proxy exposure)
    health:          {url, status, msg}          local GET of the health endpoint
    listeners:       ss_listeners output
    pid_units:       {"<pid>": "<unit>"}          proc_cgroup_units output
    expected:        {app_unit, proxy_unit, app_process_names, proxy_process_names}
    firewall:        {checked, state: os_firewall_state, note}
    security_group:  {checked, result: cloud_security_group_check, note}
    remote:          {checked, address, note,
                      tcp: [{port, ok, msg}],
                      http: {url, status, msg},
                      auth: {checked, note, probe_url, unauth_status, unauth_msg,
                             login_status, login_msg, authed_status, authed_msg},
                      backend: {checked, port, reachable, msg},
                      ca: description of the trust anchor used}
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def _load_listeners() -> Any:
    """filter_plugins/listeners.py, loaded by path (Ansible does not put filter_plugins on sys.path)."""
    name = "cosyvoice_verify_listeners"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().with_name("listeners.py"))
    if spec is None or spec.loader is None:  # pragma: no cover
        raise ImportError("filter_plugins/listeners.py not found next to diagnosis.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


_listeners = _load_listeners()
listener_reach = _listeners.listener_reach
listeners_on_port = _listeners.listeners_on_port

OK, FAIL, WARN, SKIP = "ok", "fail", "warn", "skip"


@dataclass(frozen=True)
class Layer:
    id: str
    title: str
    symptom: str  # what users see (the seed's troubleshooting table, 现象)
    seed: str  # the seed's row: cause -> what to do


LAYERS: tuple[Layer, ...] = (
    Layer("service", "Service not running / crashed", "page does not open at all (页面完全打不开)",
          "服务未启动 -> ps aux | grep python; systemctl status; journalctl"),
    Layer("bind", "Listening on the wrong address or port", "only the server itself can open it (只能本机访问)",
          "server_name 错误 -> 修改为 0.0.0.0 并重启服务"),
    Layer("port_conflict", "Port held by another process", "connection refused (提示\"拒绝连接\")",
          "端口被占用或服务崩溃 -> lsof -i :<port> 查杀冲突进程"),
    Layer("os_firewall", "Host firewall blocks the port", "connection timed out (显示\"连接超时\")",
          "防火墙未放行端口 -> allow <port>/tcp"),
    Layer("security_group", "Cloud security group blocks the port", "connection timed out (显示\"连接超时\")",
          "安全组未放行 -> 登录云平台添加入站规则 <port>/tcp"),
    Layer("client", "Client URL, port or routing", "cannot connect from outside although the host looks right",
          "客户端网络无法路由到目标IP / 端口一致性: 改了端口就必须用 http://ip:<port> 访问"),
    Layer("tls", "TLS certificate", "browser warns about the certificate / client refuses it",
          "反向代理 + HTTPS: 证书须包含用户访问的地址"),
    Layer("auth", "Login", "anyone can use it, or the right password is refused",
          "启用登录认证, 防止陌生人随意使用你的算力资源"),
    Layer("http", "HTTP response from proxy or application", "page opens with an error (502/500)",
          "反向代理 proxy_pass 指向 127.0.0.1:<port>"),
)
LAYER_IDS = tuple(layer.id for layer in LAYERS)
_LAYER = {layer.id: layer for layer in LAYERS}
ENABLED_STATES = ("enabled", "enabled-runtime", "static", "indirect", "generated", "transient", "alias", "linked")
_ERROR_LINE = re.compile(r"\b(ERROR|CRITICAL|Error|error:|Traceback|Exception|already in use|failed)\b")


def systemctl_properties(text: Any) -> dict[str, str]:
    """`systemctl show UNIT -p A,B` output -> {"A": "...", "B": "..."}."""
    if isinstance(text, (list, tuple)):
        text = "\n".join(str(x) for x in text)
    props: dict[str, str] = {}
    for line in str(text or "").splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip():
            props[key.strip()] = value.strip()
    return props


def systemctl_properties_list(text: Any) -> list[dict[str, str]]:
    """`systemctl show -p ... UNIT1 UNIT2` output (blocks separated by blank lines) -> one dict per unit."""
    if isinstance(text, (list, tuple)):
        text = "\n".join(str(x) for x in text)
    blocks = re.split(r"\n\s*\n", str(text or "").strip())
    return [systemctl_properties(b) for b in blocks if b.strip()]


def verify_sections(text: Any, names: Any = ("systemctl", "ss", "cgroup", "journal")) -> dict[str, str]:
    """Split output made of '### <name>' sections (the verify role's one-shot evidence script).

    Every name in `names` is present ('' when absent); a marker line '### <key> <value>' (e.g.
    '### ss-failed 1') also records <key>: <value>.
    """
    out: dict[str, list[str]] = {n: [] for n in names}
    current: list[str] | None = None
    for line in str(text or "").splitlines():
        if line.startswith("### "):
            key, _, value = line[4:].strip().partition(" ")
            if value:
                out[key] = [value]
                continue
            current = out.setdefault(key, [])
            continue
        if current is not None:
            current.append(line)
    return {k: "\n".join(v) for k, v in out.items()}


def verify_health_line(line: Any, url: str = "") -> dict[str, Any]:
    """'<status> <reason>' printed by the verify role's host probe -> {url, status, ok, msg}."""
    lines = str(line or "").strip().splitlines()
    first = lines[0].strip() if lines else ""
    head, _, rest = first.partition(" ")
    if re.fullmatch(r"-?\d+", head):
        status, msg = int(head), rest.strip()
    else:  # no status printed: the probe itself could not run
        status, msg = -1, first or "no answer from the host's probe (no python on the host?)"
    return {"url": url, "status": status, "ok": status == 200, "msg": msg}


def _probe(r: dict[str, Any], url: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    item = r.get("item")
    if isinstance(item, dict) and "port" in item:
        out["port"] = _int(item["port"])
    elif "port" in r:
        out["port"] = _int(r["port"])
    # uri's "Status code was -1 and not [200, 401]: Request failed: <urlopen error ...>" -> the error itself
    msg = re.sub(r"^Status code was -?\d+ and not \[[^\]]*\]: (Request failed: )?", "", str(r.get("msg") or ""))
    if "status" in r:  # uri: the status says it all (-1 = no HTTP response)
        out["status"] = _int(r["status"])
        out["ok"] = 0 < out["status"] < 400
    else:  # wait_for: registered with failed_when: false, so only a failure carries a msg
        out["ok"] = not r.get("failed") and not msg
    out["msg"] = msg
    if url or r.get("url"):
        out["url"] = url or r.get("url")
    if r.get("location"):
        out["location"] = r["location"]
    if "elapsed" in r:
        out["elapsed"] = r["elapsed"]
    return out


def cosyvoice_probe_summary(result: Any, url: str | None = None) -> Any:
    """A registered uri/wait_for result (or a loop of them) -> only what the diagnosis needs.

    Keeps port, ok, status, msg, url, location, elapsed; never request data (no credentials).
    A skipped or missing result gives {} (a loop: [] ).
    """
    if not isinstance(result, dict) or not result or result.get("skipped"):
        return [] if isinstance(result, dict) and "results" in result else {}
    if "results" in result:
        return [_probe(r, None) for r in result["results"] if isinstance(r, dict) and not r.get("skipped")]
    return _probe(result, url)


def _check(layer: str, cid: str, status: str, summary: str, cause: str = "", fix: str = "",
           symptom: str = "", seed: str = "") -> dict[str, Any]:
    """One check's result; symptom/seed override the layer's when this failure looks different."""
    item = {"layer": layer, "id": cid, "status": status, "summary": summary}
    if status in (FAIL, WARN):
        item["cause"] = cause or summary
        item["fix"] = fix
        if symptom:
            item["symptom"] = symptom
        if seed:
            item["seed"] = seed
    return item


def _int(value: Any, default: int = -1) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _unit_name(name: Any) -> str:
    text = str(name or "")
    return text if text.endswith((".service", ".scope")) else f"{text}.service"


def _proc(p: dict[str, Any], pid_units: dict[str, str]) -> str:
    unit = pid_units.get(str(p.get("pid")), "")
    return f"{p.get('name')} (pid {p.get('pid')}{', ' + unit if unit else ''})"


def _error_line(journal: Any) -> str:
    lines = [str(x).strip() for x in (journal or []) if str(x).strip()]
    for line in reversed(lines):
        if _ERROR_LINE.search(line) and not line.startswith(("Started ", "Stopped ", "Starting ")):
            if re.search(r"(Main process exited|Failed with result|Scheduled restart job)", line):
                continue
            return line
    return lines[-1] if lines else ""


class _Ctx:
    """Normalised evidence."""

    def __init__(self, ev: dict[str, Any]) -> None:
        self.ev = ev
        ep = ev.get("endpoint") or {}
        self.ep = ep
        self.exposure = str(ep.get("exposure") or "direct")
        self.backend_port = _int(ep.get("backend_port"), 7860)
        self.public_ports = [
            {"port": _int(p.get("port")), "proto": str(p.get("proto") or "tcp"), "purpose": p.get("purpose", "")}
            for p in (ep.get("public_ports") or []) if isinstance(p, dict)
        ]
        self.public_address = ep.get("public_address")
        self.url = ep.get("url") or ""
        self.listeners = ev.get("listeners") or []
        self.pid_units = {str(k): str(v) for k, v in (ev.get("pid_units") or {}).items()}
        exp = ev.get("expected") or {}
        svc = ev.get("service") or {}
        self.app_unit = _unit_name(exp.get("app_unit") or svc.get("unit") or "cosyvoice")
        self.proxy_unit = _unit_name(exp.get("proxy_unit") or "nginx")
        self.app_names = [str(x) for x in exp.get("app_process_names") or ["python3", "python"]]
        self.proxy_names = [str(x) for x in exp.get("proxy_process_names") or ["nginx"]]
        self.svc_props = svc.get("properties") or {}
        self.journal = svc.get("journal") or []
        self.proxy_props = (ev.get("proxy_service") or {}).get("properties") or {}
        self.remote = ev.get("remote") or {}

    # -- service state ----------------------------------------------------
    @property
    def unit_found(self) -> bool:
        return bool(self.svc_props) and self.svc_props.get("LoadState", "loaded") not in ("not-found", "")

    @property
    def app_active(self) -> bool:
        return self.svc_props.get("ActiveState") == "active"

    def app_listeners(self) -> list[dict[str, Any]]:
        """Listeners (any port) owned by the app: by unit, else by process name for unmanaged apps."""
        out = []
        for x in self.listeners:
            for p in x.get("processes", []):
                if self._is_expected(p, self.app_unit, self.app_names, self.unit_found):
                    out.append(x)
                    break
        return out

    def _is_expected(self, p: dict[str, Any], unit: str, names: list[str], unit_exists: bool) -> bool:
        pid = str(p.get("pid"))
        if unit_exists and pid in self.pid_units:
            return self.pid_units[pid] == unit
        return str(p.get("name")) in names

    def port_owner(self, port: int) -> tuple[str, list[str], bool]:
        if port == self.backend_port:
            return self.app_unit, self.app_names, self.unit_found
        proxy_exists = bool(self.proxy_props) and self.proxy_props.get("LoadState", "loaded") != "not-found"
        return self.proxy_unit, self.proxy_names, proxy_exists

    def foreign(self, port: int) -> tuple[list[dict[str, Any]], bool]:
        """(processes on `port` that are not the expected owner, whether process info was available)."""
        unit, names, exists = self.port_owner(port)
        mine = listeners_on_port(self.listeners, port)
        procs = [p for x in mine for p in x.get("processes", [])]
        if mine and not procs:
            return [], False
        seen: set[int] = set()
        out = []
        for p in procs:
            if p["pid"] in seen:
                continue
            seen.add(p["pid"])
            if not self._is_expected(p, unit, names, exists):
                out.append(p)
        return out, True


# -- layers ---------------------------------------------------------------

def _service(c: _Ctx) -> list[dict[str, Any]]:
    L = "service"
    unit = c.app_unit
    checks: list[dict[str, Any]] = []
    props = c.svc_props
    port = c.backend_port
    if not props:
        checks.append(_check(L, "service.unit", SKIP, f"state of {unit} not collected"))
    elif not c.unit_found:
        app = [x for x in c.app_listeners() if x["port"] == port]
        if app:
            who = ", ".join(_proc(p, c.pid_units) for x in app for p in x["processes"])
            checks.append(_check(
                L, "service.unit", WARN, f"no systemd unit {unit}; {who} listens on port {port} (started by hand?)",
                f"the app on port {port} runs outside systemd ({who}): nothing restarts it after a crash or reboot",
                "deploy it with site.yml (systemd unit cosyvoice.service), or point the check at your unit with "
                "-e cosyvoice_service_name=<unit>"))
        else:
            checks.append(_check(
                L, "service.unit", FAIL, f"no systemd unit {unit} and nothing of it listens on port {port}",
                f"there is no {unit} on this host and no {'/'.join(c.app_names)} process listens on port {port}: "
                "the service is not installed or runs under another name",
                "deploy with: ansible-playbook site.yml --tags cosyvoice; if the app runs under another unit or port, "
                "re-run the diagnosis with -e cosyvoice_service_name=<unit> -e cosyvoice_server_port=<port>"))
    elif props.get("LoadState") == "masked":
        checks.append(_check(L, "service.unit", FAIL, f"{unit} is masked", f"{unit} is masked and cannot start",
                             f"systemctl unmask {unit} && systemctl enable --now {unit}"))
    else:
        active, sub = props.get("ActiveState", "?"), props.get("SubState", "?")
        result, status = props.get("Result", ""), props.get("ExecMainStatus", "")
        restarts = props.get("NRestarts", "0")
        err = _error_line(c.journal)
        last = f" Last log line: {err}" if err else ""
        if active == "active":
            checks.append(_check(L, "service.active", OK,
                                 f"{unit} active ({sub}), main pid {props.get('MainPID', '?')}, restarts {restarts}"))
        elif active == "activating" and sub != "auto-restart":
            checks.append(_check(
                L, "service.active", FAIL, f"{unit} still starting ({sub})",
                f"{unit} has not finished starting (state {active}/{sub}); the model may still be loading.{last}",
                f"wait and re-run; follow it with: journalctl -fu {unit}"))
        elif result not in ("", "success") or sub in ("auto-restart", "failed"):
            checks.append(_check(
                L, "service.active", FAIL,
                f"{unit} crashed: {active}/{sub}, result {result or '?'}, exit status {status or '?'}, restarts {restarts}",
                f"{unit} is not running: it exited with status {status or '?'} (result {result or '?'}, "
                f"{restarts} restarts).{last}",
                f"read the error: journalctl -u {unit} -n 50 --no-pager; fix it, then: systemctl restart {unit}"))
        else:
            checks.append(_check(
                L, "service.active", FAIL, f"{unit} is not running ({active}/{sub}), last stop was clean",
                f"{unit} is stopped ({active}/{sub}): it was stopped by hand or never started; "
                "nothing serves the UI (the seed's 服务未启动)",
                f"systemctl enable --now {unit} (or re-run: ansible-playbook site.yml --tags cosyvoice)"))
        ufs = props.get("UnitFileState", "")
        if ufs and ufs not in ENABLED_STATES:
            checks.append(_check(L, "service.enabled", FAIL, f"{unit} is {ufs}: it will not start at boot",
                                 f"{unit} is not enabled ({ufs}): after a reboot the service stays down",
                                 f"systemctl enable {unit}"))
        elif ufs:
            checks.append(_check(L, "service.enabled", OK, f"{unit} {ufs}"))
    if c.exposure == "proxy":
        pp = c.proxy_props
        if not pp:
            checks.append(_check(L, "proxy.active", SKIP, f"state of {c.proxy_unit} not collected"))
        elif pp.get("LoadState") == "not-found":
            checks.append(_check(L, "proxy.active", FAIL, f"no {c.proxy_unit} on this host",
                                 f"proxy exposure needs nginx, but {c.proxy_unit} does not exist",
                                 "deploy it: ansible-playbook site.yml --tags proxy"))
        elif pp.get("ActiveState") != "active":
            checks.append(_check(
                L, "proxy.active", FAIL, f"{c.proxy_unit} not running ({pp.get('ActiveState')}/{pp.get('SubState')})",
                f"{c.proxy_unit} is not running ({pp.get('ActiveState')}/{pp.get('SubState')}, result "
                f"{pp.get('Result', '?')}): nothing serves ports {', '.join(str(p['port']) for p in c.public_ports)}",
                f"nginx -t; journalctl -u {c.proxy_unit} -n 50 --no-pager; systemctl restart {c.proxy_unit}"))
        else:
            checks.append(_check(L, "proxy.active", OK, f"{c.proxy_unit} active ({pp.get('SubState', '?')})"))
    health = c.ev.get("health")
    if not health:
        checks.append(_check(L, "service.health", SKIP, "local health request not made"))
    else:
        code = _int(health.get("status"))
        url = health.get("url", "")
        if code == 200:
            checks.append(_check(L, "service.health", OK, f"{url} -> 200 on the host"))
        elif code in (-1, 0):
            checks.append(_check(
                L, "service.health", FAIL, f"{url} does not answer on the host ({health.get('msg', '')})",
                f"nothing answers {url} on the host itself ({health.get('msg', '')})",
                f"journalctl -u {unit} -n 50 --no-pager; ss -ltnp 'sport = :{port}'"))
        else:
            checks.append(_check(
                L, "service.health", FAIL, f"{url} -> {code} on the host",
                f"the health endpoint answers {code} instead of 200 on the host: the engine is not loaded, or "
                f"something else answers on port {port}",
                f"journalctl -u {unit} -n 50 --no-pager; ss -ltnp 'sport = :{port}'"))
    return checks


def _reach_check(c: _Ctx, L: str, cid: str, port: int, who: str) -> dict[str, Any]:
    r = listener_reach(c.listeners, port, c.public_address)
    addrs = ", ".join(r["addresses"])
    if not r["listening"]:
        return _check(L, cid, FAIL, f"nothing listens on port {port}",
                      f"{who} should listen on port {port} but nothing does",
                      f"ss -ltnp; journalctl -u {c.app_unit if port == c.backend_port else c.proxy_unit} -n 50")
    if r["loopback_only"]:
        return _check(
            L, cid, FAIL, f"port {port} is bound to loopback only ({addrs})",
            f"{who} listens on {addrs}: only programs on the server itself can connect; every other machine is "
            "refused (the seed's 127.0.0.1 vs 0.0.0.0 pitfall, 只能本机访问)",
            "listen on all interfaces: set cosyvoice_exposure: direct and leave cosyvoice_server_name unset "
            "(= 0.0.0.0), then re-run: ansible-playbook site.yml --tags cosyvoice. A hand-started app needs "
            "--server-name 0.0.0.0 / demo.launch(server_name=\"0.0.0.0\") and a restart")
    if not r["public_ok"]:
        return _check(
            L, cid, FAIL, f"port {port} listens on {addrs}, which does not serve {r['public_family']} clients",
            f"{who} listens on {addrs} only, but users connect over {r['public_family']} to {c.public_address} "
            "([::] with IPV6_V6ONLY serves IPv6 clients only)",
            "listen on 0.0.0.0 (IPv4) or a dual-stack [::] socket (shown as *:port by ss)")
    if not r["public_exact"]:
        return _check(
            L, cid, WARN, f"port {port} listens on {addrs} only, not on {c.public_address}",
            f"{who} listens on {addrs}; users use {c.public_address} (fine behind NAT, wrong otherwise)",
            "listen on 0.0.0.0 unless NAT maps the public address to this one")
    return _check(L, cid, OK, f"port {port} listens on {addrs} (reachable from other hosts)")


_BYPASS = "the app's own port is open next to the proxy (no TLS, no login on it)"
_PROXY_SEED = "反向代理 + HTTPS: proxy_pass http://127.0.0.1:<port>, 隐藏真实端口"


def _bind(c: _Ctx) -> list[dict[str, Any]]:
    L = "bind"
    checks: list[dict[str, Any]] = []
    if not c.ev.get("listeners_checked", "listeners" in c.ev):
        return [_check(L, "bind.listeners", SKIP, "listeners (ss) not collected")]
    port = c.backend_port
    on_port = listeners_on_port(c.listeners, port)
    app_elsewhere = sorted({x["port"] for x in c.app_listeners() if x["port"] != port})
    if not on_port:
        if c.app_active and app_elsewhere:
            other = ", ".join(str(p) for p in app_elsewhere)
            checks.append(_check(
                L, "bind.port", FAIL, f"{c.app_unit} listens on port {other}, not on {port}",
                f"{c.app_unit} is running but listens on {other} while the endpoint says {port} "
                "(the seed's 端口一致性: a changed port must be used in the URL too)",
                f"make cosyvoice_server_port and the running unit agree (re-run site.yml --tags cosyvoice), "
                f"or open http://{c.public_address}:{other}/",
                symptom="nothing answers on the port in the URL (拒绝连接)",
                seed="端口一致性: 如果你改成了7861, 就必须用 http://ip:7861 访问"))
        elif c.app_active:
            checks.append(_check(
                L, "bind.port", FAIL, f"{c.app_unit} is active but nothing listens on port {port}",
                f"{c.app_unit} runs but no socket is listening on port {port} (it may still be starting, or listens "
                "on a port ss could not attribute)",
                f"ss -ltnp; journalctl -u {c.app_unit} -n 50 --no-pager"))
        else:
            checks.append(_check(L, "bind.port", SKIP, f"nothing listens on port {port} (service down)"))
        return checks
    if c.exposure == "direct":
        checks.append(_reach_check(c, L, "bind.public", port, f"{c.app_unit} (direct exposure)"))
    else:
        exposed = [x for x in on_port if not x["loopback"]]
        if exposed:
            addrs = ", ".join(x["local"] for x in exposed)
            checks.append(_check(
                L, "bind.backend", FAIL, f"backend port {port} listens on {addrs}, not on loopback only",
                f"in {c.exposure} exposure the app must listen on 127.0.0.1 only, but it listens on {addrs}: anyone "
                "who reaches the port bypasses nginx's TLS and login",
                "leave cosyvoice_server_name unset (127.0.0.1 for proxy/local) and re-run: "
                "ansible-playbook site.yml --tags cosyvoice", symptom=_BYPASS, seed=_PROXY_SEED))
        else:
            addrs = ", ".join(x["local"] for x in on_port)
            checks.append(_check(L, "bind.backend", OK, f"backend port {port} on loopback only ({addrs})"))
    if c.exposure == "proxy":
        for p in c.public_ports:
            checks.append(_reach_check(c, L, f"bind.public.{p['port']}", p["port"], f"{c.proxy_unit}"))
    backend = c.remote.get("backend") or {}
    if c.exposure == "proxy" and backend.get("checked"):
        if backend.get("reachable"):
            checks.append(_check(
                L, "bind.backend_remote", FAIL,
                f"backend port {backend.get('port')} is reachable from the controller",
                f"the controller connected to {c.public_address}:{backend.get('port')}: the app is exposed "
                "around nginx (no TLS, no login)",
                "bind the app to 127.0.0.1 (cosyvoice_server_name unset) and keep the port closed in the firewall",
                symptom=_BYPASS, seed=_PROXY_SEED))
        else:
            checks.append(_check(L, "bind.backend_remote", OK,
                                 f"backend port {backend.get('port')} not reachable from the controller"))
    return checks


def _port_conflict(c: _Ctx) -> list[dict[str, Any]]:
    L = "port_conflict"
    ports = [c.backend_port] + ([p["port"] for p in c.public_ports] if c.exposure == "proxy" else [])
    checks: list[dict[str, Any]] = []
    for port in ports:
        unit, _, _ = c.port_owner(port)
        foreign, known = c.foreign(port)
        if not listeners_on_port(c.listeners, port):
            checks.append(_check(L, f"port_conflict.{port}", OK, f"port {port}: free (no other process holds it)"))
        elif not known:
            checks.append(_check(L, f"port_conflict.{port}", SKIP,
                                 f"port {port}: no process information (ss -p needs root)"))
        elif foreign:
            who = ", ".join(_proc(p, c.pid_units) for p in foreign)
            stop = []
            for p in foreign:
                u = c.pid_units.get(str(p["pid"]), "")
                stop.append(f"systemctl stop {u}" if u.endswith(".service") else f"kill {p['pid']}")
            checks.append(_check(
                L, f"port_conflict.{port}", FAIL, f"port {port} is held by {who}, not by {unit}",
                f"port {port} is already taken by {who} (what `lsof -i :{port}` shows), so {unit} cannot listen "
                "on it (the seed's 端口被占用)",
                f"free the port: {'; '.join(stop)}; then systemctl restart {unit}. Or move the service to a free "
                "port (cosyvoice_server_port) and use that port in the URL"))
        else:
            _, _, exists = c.port_owner(port)
            procs = {p["pid"]: p for x in listeners_on_port(c.listeners, port) for p in x.get("processes", [])}
            shown = [_proc(p, c.pid_units) for _, p in sorted(procs.items())]
            holders = ", ".join(shown[:3]) + (f" and {len(shown) - 3} more" if len(shown) > 3 else "")
            note = "" if exists else f" (no {unit}: taken to be the app by its process name)"
            checks.append(_check(L, f"port_conflict.{port}", OK, f"port {port} held by {holders}{note}"))
    return checks


def _port_key(item: Any) -> tuple[int, str] | None:
    if isinstance(item, dict):
        port = _int(item.get("port"), -1)
        proto = str(item.get("proto") or item.get("protocol") or "tcp").lower()
    else:
        text = str(item).strip().lower()
        num, _, proto = text.partition("/")
        port, proto = _int(num, -1), proto or "tcp"
    return (port, proto) if port > 0 else None


def _firewall_fix(backend: str, port: int, proto: str) -> str:
    cmd = {
        "ufw": f"ufw allow {port}/{proto}",
        "firewalld": f"firewall-cmd --permanent --add-port={port}/{proto} && firewall-cmd --reload",
        "nftables": f"nft add rule inet filter input {proto} dport {port} accept",
        "iptables": f"iptables -I INPUT -p {proto} --dport {port} -j ACCEPT",
    }.get(backend, f"allow {port}/{proto} in the host firewall")
    return f"re-run: ansible-playbook site.yml --tags firewall (by hand: {cmd})"


def _os_firewall(c: _Ctx) -> list[dict[str, Any]]:
    """os_firewall_state: {backend, active, allowed_ports: [{port, proto}],
    ports: [{port, proto, allowed: true|false|null, scope: any|some|none|unknown, reason}]}."""
    L = "os_firewall"
    fw = c.ev.get("firewall") or {}
    if not fw.get("checked"):
        return [_check(L, "os_firewall", SKIP, fw.get("note") or "host firewall not checked")]
    state = fw.get("state") or {}
    backend = str(state.get("backend") or "unknown")
    if state.get("error"):
        return [_check(L, "os_firewall", WARN, f"firewall status unreadable: {state.get('error')}",
                       f"could not read the {backend} firewall: {state.get('error')}", "check it by hand")]
    if state.get("active") is False:
        return [_check(L, "os_firewall", OK, f"{backend}: no host firewall filtering" if backend in ("none", "unknown")
                       else f"{backend} installed but inactive (not filtering)")]
    if not c.public_ports:
        return [_check(L, "os_firewall", OK, f"{backend} active; {c.exposure} exposure opens no port")]
    detail = {k: p for p in state.get("ports") or [] if isinstance(p, dict) and (k := _port_key(p))}
    allowed = {k for k in (_port_key(x) for x in state.get("allowed_ports") or []) if k}
    blocked, partial, unknown, fine = [], [], [], []
    for p in c.public_ports:
        key = (p["port"], p["proto"])
        d = detail.get(key)
        name = f"{p['port']}/{p['proto']}"
        if d is not None and d.get("allowed") is None or (d is None and state.get("active") is None):
            unknown.append((p, name, (d or {}).get("reason") or "firewall state unknown"))
        elif d is not None and d.get("allowed") is False or (d is None and key not in allowed):
            blocked.append((p, name, (d or {}).get("reason") or ""))
        elif d is not None and d.get("scope") == "some":
            partial.append((p, name, d.get("reason") or "allowed from some sources only"))
        else:
            fine.append(name)
    if blocked:
        names = ", ".join(n for _, n, _ in blocked)
        why = "; ".join(r for _, _, r in blocked if r)
        p0 = blocked[0][0]
        return [_check(
            L, "os_firewall", FAIL, f"{backend} is active and does not allow {names}",
            f"the host firewall ({backend}) is active and does not allow {names}{f' ({why})' if why else ''}: "
            "clients' packets are dropped before they reach the service (they see a timeout, 显示\"连接超时\")",
            _firewall_fix(backend, p0["port"], p0["proto"]))]
    checks: list[dict[str, Any]] = []
    for _, name, reason in unknown:
        checks.append(_check(L, "os_firewall", WARN, f"{backend}: cannot tell whether {name} is allowed ({reason})",
                             f"the host firewall's rules for {name} could not be evaluated: {reason}",
                             "check by hand: nft list ruleset / ufw status verbose / firewall-cmd --list-all"))
    for _, name, reason in partial:
        checks.append(_check(L, "os_firewall", WARN, f"{backend} allows {name} from some sources only ({reason})",
                             f"{name} is allowed only from some sources: {reason}",
                             "fine if your users are among them; otherwise widen os_firewall's allowed sources"))
    if fine and not checks:
        checks.append(_check(L, "os_firewall", OK, f"{backend} active, allows {', '.join(fine)}"))
    return checks


def _security_group(c: _Ctx) -> list[dict[str, Any]]:
    L = "security_group"
    sg = c.ev.get("security_group") or {}
    if not sg.get("checked"):
        return [_check(L, "security_group", SKIP, sg.get("note") or "no cloud provider configured")]
    res = sg.get("result") or {}
    provider = res.get("provider", "cloud")
    if res.get("skipped"):
        return [_check(L, "security_group", SKIP, f"{provider}: {res.get('msg') or 'check skipped'}")]
    if res.get("ok"):
        return [_check(L, "security_group", OK, f"{provider} security group allows the public ports")]
    missing = res.get("missing") or []
    text = ", ".join(
        (f"{m.get('port')}/{m.get('proto', 'tcp')}" + (f" from {m['cidr']}" if m.get("cidr") else ""))
        if isinstance(m, dict) else str(m) for m in missing) or "the public ports"
    return [_check(
        L, "security_group", FAIL, f"{provider} security group does not allow {text}",
        f"the {provider} security group attached to the instance does not allow {text}: the cloud drops the "
        "packets before they reach the host (many clouds open only 22/80/443 by default)",
        "re-run: ansible-playbook site.yml --tags security_group, or add the inbound rule in the cloud console")]


def _conn_kind(msg: str) -> str:
    m = msg.lower()
    if "refused" in m:
        return "refused"
    if "timed out" in m or "timeout" in m:
        return "timeout"
    if "no route" in m or "unreachable" in m:
        return "unreachable"
    if "name or service not known" in m or "getaddrinfo" in m or "nodename nor servname" in m \
            or "temporary failure in name resolution" in m:
        return "dns"
    if "certificate" in m or "ssl" in m or "tls" in m:
        return "tls"
    return "other"


def _client(c: _Ctx) -> list[dict[str, Any]]:
    L = "client"
    r = c.remote
    if not r.get("checked"):
        return [_check(L, "client.tcp", SKIP, r.get("note") or "not checked from the controller")]
    addr = r.get("address") or c.public_address
    checks: list[dict[str, Any]] = []
    http = r.get("http") or {}
    # wait_for only says "Timeout when waiting"; the HTTP request's error tells refused from dropped.
    http_kind = _conn_kind(str(http.get("msg", ""))) if _int(http.get("status")) in (-1, 0) else "other"
    for t in r.get("tcp") or []:
        port = t.get("port")
        if t.get("ok"):
            checks.append(_check(L, f"client.tcp.{port}", OK, f"controller -> {addr}:{port} connects"))
            continue
        kind = http_kind if http_kind not in ("other", "tls") and port == c.ep.get("public_port") \
            else _conn_kind(str(t.get("msg", "")))
        fix = {
            "dns": f"{addr} does not resolve from the controller: fix DNS or set cosyvoice_public_address to the IP",
            "refused": f"{addr}:{port} refuses the connection although the host listens on it: {addr} is probably "
                       "not this host (NAT / port forwarding to another port or machine); check "
                       "cosyvoice_public_address and the port in the URL",
            "timeout": f"packets to {addr}:{port} are dropped on the way: a network or cloud firewall not managed "
                       "here, NAT without a port forward, or the wrong address; test from a client: "
                       f"nc -vz {addr} {port}",
            "unreachable": f"no route from the controller to {addr}: check the address, VPN and routing",
        }.get(kind, f"test from a client: curl -v {c.url or f'{addr}:{port}'}")
        checks.append(_check(
            L, f"client.tcp.{port}", FAIL, f"controller -> {addr}:{port}: {t.get('msg', 'failed')}",
            f"the controller cannot connect to {addr}:{port} ({kind})",
            fix))
    if http:
        code = _int(http.get("status"))
        url = http.get("url") or c.url
        kind = _conn_kind(str(http.get("msg", ""))) if code in (-1, 0) else ""
        if code in (-1, 0) and kind != "tls":
            checks.append(_check(
                L, "client.http", FAIL, f"GET {url}: {http.get('msg', 'failed')}",
                f"the HTTP request to {url} failed: {http.get('msg', '')}",
                f"check the URL users open ({url}): scheme, address, port; curl -v {url}"))
        elif code == 404:
            checks.append(_check(
                L, "client.http", FAIL, f"GET {url} -> 404",
                f"{url} answers 404: the UI is served under another path than {c.ep.get('root_path', '/')}",
                "make cosyvoice_root_path, the proxy location and the URL agree",
                symptom="404 page not found at the URL users open"))
        elif code > 0:
            checks.append(_check(L, "client.http", OK, f"GET {url} -> {code}"))
    return checks


def _tls(c: _Ctx) -> list[dict[str, Any]]:
    L = "tls"
    r = c.remote
    if c.ep.get("scheme") != "https":
        return [_check(L, "tls", SKIP, "plain http (no TLS in this exposure)")]
    http = r.get("http") or {}
    if not r.get("checked") or not http:
        return [_check(L, "tls", SKIP, "not checked from the controller")]
    code = _int(http.get("status"))
    msg = str(http.get("msg", ""))
    if code in (-1, 0) and _conn_kind(msg) == "tls":
        anchor = r.get("ca") or "system CAs"
        if re.search(r"self[- ]signed", msg) and anchor == "system CAs":
            fix = ("the server uses a self-signed certificate: give the verifier the file to trust "
                   "(-e verify_host_ca_path=<certificate on the host> or -e verify_ca_path=<file on the controller>); "
                   "browsers need it too, or use a CA-signed certificate (nginx_proxy_tls_mode provided or acme)")
        else:
            fix = ("the certificate must name the address users open (subjectAltName) and chain to a CA they trust: "
                   "check nginx_proxy's TLS settings and cosyvoice_public_address, then re-run site.yml --tags proxy")
        return [_check(
            L, "tls", FAIL, f"TLS verification failed: {msg}",
            f"the certificate served at {http.get('url') or c.url} is not trusted for {c.public_address} "
            f"({msg}; trust anchor: {anchor})", fix)]
    if code > 0:
        return [_check(L, "tls", OK, f"certificate verified ({r.get('ca') or 'system CAs'})")]
    return [_check(L, "tls", SKIP, "no TLS handshake completed")]


def _auth(c: _Ctx) -> list[dict[str, Any]]:
    L = "auth"
    a = (c.remote.get("auth") or {})
    if not a.get("checked"):
        return [_check(L, "auth", SKIP, a.get("note") or "login not checked from the controller")]
    checks: list[dict[str, Any]] = []
    want = bool(c.ep.get("auth"))
    url = a.get("probe_url") or c.url
    unauth = _int(a.get("unauth_status"))
    if unauth in (-1, 0):
        return [_check(L, "auth", SKIP, "no HTTP answer to judge the login by (see the layers above)")]
    if want:
        if unauth in (401, 403):
            checks.append(_check(L, "auth.required", OK, f"GET {url} without login -> {unauth}"))
        elif unauth == 200:
            checks.append(_check(
                L, "auth.required", FAIL, f"GET {url} without login -> 200",
                f"{url} answers 200 without credentials although login is required: anyone can use the GPU",
                "set cosyvoice_auth_users (in ansible-vault) and re-run site.yml"))
        else:
            checks.append(_check(
                L, "auth.required", FAIL, f"GET {url} without login -> {unauth} {a.get('unauth_msg', '')}".strip(),
                f"{url} answers {unauth} without credentials; expected 401",
                f"curl -v {url}"))
        if a.get("login_checked"):
            login = _int(a.get("login_status"), 0)
            authed = _int(a.get("authed_status"))
            if login not in (0, 200, 302, 303):
                checks.append(_check(
                    L, "auth.login", FAIL, f"login -> {login}",
                    f"the login with the first user of cosyvoice_auth_users is refused ({login} "
                    f"{a.get('login_msg', '')})".strip(),
                    "check the password in the vault matches the deployed one; re-run site.yml --tags cosyvoice,proxy"))
            elif authed == 200:
                checks.append(_check(L, "auth.login", OK, f"GET {url} logged in -> 200"))
            elif authed >= 500:
                checks.append(_check(L, "auth.login", OK, f"login accepted; GET {url} -> {authed} (see layer http)"))
            else:
                checks.append(_check(
                    L, "auth.login", FAIL, f"GET {url} logged in -> {authed} {a.get('authed_msg', '')}".strip(),
                    f"with valid credentials {url} answers {authed} instead of 200",
                    "check the credentials and the proxy's auth configuration; re-run site.yml"))
        else:
            checks.append(_check(L, "auth.login", SKIP, a.get("note") or "no credentials to test a login with"))
    else:
        if unauth in (401, 403):
            checks.append(_check(
                L, "auth.required", FAIL, f"GET {url} -> {unauth} but login is off",
                f"{url} asks for credentials although cosyvoice_endpoint.auth is false (a stale auth setup)",
                "re-run site.yml so the proxy and the app agree on cosyvoice_auth_users"))
        else:
            checks.append(_check(L, "auth.required", OK, f"login off; GET {url} -> {unauth}"))
    return checks


def _http(c: _Ctx) -> list[dict[str, Any]]:
    L = "http"
    r = c.remote
    http = r.get("http") or {}
    if not r.get("checked") or not http:
        return [_check(L, "http", SKIP, "not checked from the controller")]
    a = r.get("auth") or {}
    codes = [_int(http.get("status"))]
    if a.get("login_checked"):
        codes.append(_int(a.get("authed_status")))
    bad = [x for x in codes if x >= 500]
    url = http.get("url") or c.url
    if bad:
        code = bad[0]
        if c.exposure == "proxy" and code in (502, 503, 504):
            return [_check(
                L, "http", FAIL, f"{url} -> {code} from the proxy",
                f"nginx answers {code}: it cannot get a response from the app at "
                f"{c.ep.get('backend_url') or f'127.0.0.1:{c.backend_port}'}",
                f"make nginx's upstream match cosyvoice_server_port ({c.backend_port}) and check the app: "
                f"journalctl -u {c.app_unit} -n 50; re-run site.yml --tags proxy")]
        return [_check(L, "http", FAIL, f"{url} -> {code}",
                       f"the application answers {code} (server error)",
                       f"journalctl -u {c.app_unit} -n 50 --no-pager")]
    good = [x for x in codes if 0 < x < 500]
    if good:
        return [_check(L, "http", OK, f"{url} answers ({', '.join(str(x) for x in codes)})")]
    return [_check(L, "http", SKIP, "no HTTP response")]


_EVALUATORS = {
    "service": _service, "bind": _bind, "port_conflict": _port_conflict, "os_firewall": _os_firewall,
    "security_group": _security_group, "client": _client, "tls": _tls, "auth": _auth, "http": _http,
}


def cosyvoice_diagnose(evidence: dict[str, Any]) -> dict[str, Any]:
    """Judge every layer; name the first failing one (see module doc)."""
    if not isinstance(evidence, dict):
        raise TypeError(f"cosyvoice_diagnose expects a dict of evidence, got {type(evidence).__name__}")
    c = _Ctx(evidence)
    checks: list[dict[str, Any]] = []
    for layer in LAYERS:
        checks.extend(_EVALUATORS[layer.id](c))
    failed = [x for x in checks if x["status"] == FAIL]
    primary = failed[0] if failed else None
    if primary is not None and primary["layer"] == "service":
        conflict = next((x for x in failed if x["layer"] == "port_conflict"), None)
        if conflict is not None:
            primary = conflict  # the conflict is why the service is down
    host = str(evidence.get("host") or "")
    result: dict[str, Any] = {
        "host": host,
        "ok": primary is None,
        "exposure": c.exposure,
        "url": c.url,
        "checks": checks,
        "failed_layers": [x for x in LAYER_IDS if any(f["layer"] == x for f in failed)],
        "warnings": [x for x in checks if x["status"] == WARN],
    }
    if evidence.get("time"):
        result["time"] = evidence["time"]
    if primary is None:
        result.update(layer=None, layer_number=None, title=None, cause=None, fix=None, symptom=None, seed=None,
                      message=f"{host}: all checks passed; users reach {c.url or 'the service'}")
        return result
    layer = _LAYER[primary["layer"]]
    port = str(c.public_ports[0]["port"] if c.public_ports and c.exposure == "direct" else c.backend_port)
    number = LAYER_IDS.index(layer.id) + 1
    result.update(
        layer=layer.id,
        layer_number=number,
        title=layer.title,
        check=primary["id"],
        cause=primary["cause"],
        fix=primary["fix"],
        symptom=primary.get("symptom") or layer.symptom,
        seed=(primary.get("seed") or layer.seed).replace("<port>", port),
        message=(f"{host}: {c.url or 'the service'} FAILED at layer {number}/{len(LAYERS)} '{layer.id}' "
                 f"({layer.title}). Cause: {primary['cause']}. Fix: {primary['fix']}."),
    )
    return result


_MARK = {OK: "ok  ", FAIL: "FAIL", WARN: "warn", SKIP: "skip"}


def cosyvoice_diagnosis_text(diagnosis: dict[str, Any], report_path: str = "") -> str:
    """Readable report of a diagnosis (what the role writes to report.txt)."""
    d = diagnosis or {}
    lines = [
        f"CosyVoice reachability report: {d.get('host', '')}",
        f"URL:      {d.get('url') or '(none: local exposure)'}  (exposure {d.get('exposure', '?')})",
    ]
    if d.get("time"):
        lines.append(f"Checked:  {d['time']}")
    if d.get("ok"):
        lines.append("Result:   OK, every layer passed")
    else:
        lines += [
            f"Result:   FAILED at layer {d.get('layer_number')}/{len(LAYERS)}: {d.get('layer')} ({d.get('title')})",
            f"Symptom:  {d.get('symptom')}",
            f"Cause:    {d.get('cause')}",
            f"Fix:      {d.get('fix')}",
            f"Seed row: {d.get('seed')}",
        ]
    lines.append("")
    lines.append("Checks, in diagnosis order:")
    for number, layer in enumerate(LAYERS, 1):
        for x in (c for c in d.get("checks", []) if c.get("layer") == layer.id):
            lines.append(f"  [{_MARK.get(x['status'], x['status'])}] {number}.{layer.id:<15} {x['summary']}")
            if x["status"] == WARN:
                lines.append(f"         {'':<17} fix: {x.get('fix', '')}")
    if report_path:
        lines += ["", f"JSON: {report_path}"]
    return "\n".join(lines) + "\n"


def cosyvoice_diagnosis_json(diagnosis: dict[str, Any]) -> str:
    """Stable, pretty JSON for the report file."""
    return json.dumps(diagnosis, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "cosyvoice_diagnose": cosyvoice_diagnose,
            "cosyvoice_diagnosis_text": cosyvoice_diagnosis_text,
            "cosyvoice_diagnosis_json": cosyvoice_diagnosis_json,
            "systemctl_properties": systemctl_properties,
            "systemctl_properties_list": systemctl_properties_list,
            "cosyvoice_probe_summary": cosyvoice_probe_summary,
            "verify_sections": verify_sections,
            "verify_health_line": verify_health_line,
        }
