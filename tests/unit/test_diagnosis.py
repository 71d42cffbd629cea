"""Unit tests for plugins/filter/diagnosis.py: which layer is named, with which cause and fix.

Evidence is built the way the verify role builds it, from real command output
where the layer depends on it (tests/unit/data/{ss,systemctl,cgroup}/).
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.cosyvoice.deploy.plugins.filter import diagnosis as dg
from ansible_collections.cosyvoice.deploy.plugins.module_utils import listeners as ls
from ansible_collections.cosyvoice.deploy.plugins.module_utils import systemd as sd

_DATA = Path(__file__).resolve().parent / "data"

PUBLIC = "172.17.0.5"
APP_PID = 812
ACTIVE = {"LoadState": "loaded", "ActiveState": "active", "SubState": "running", "Result": "success",
          "UnitFileState": "enabled", "MainPID": str(APP_PID), "NRestarts": "0", "ExecMainStatus": "0",
          "ExecMainCode": "0"}


def data(path: str) -> str:
    return (_DATA / path).read_text(encoding="utf-8")


def ss(*lines: str) -> list[dict[str, Any]]:
    return ls.ss_listeners("\n".join(lines))


def app_line(local: str = "0.0.0.0:7860", pid: int = APP_PID) -> str:
    # The launcher runs as <venv>/bin/python -m cosyvoice_launcher: ss shows "python".
    return f'LISTEN 0      128          {local} 0.0.0.0:* users:(("python",pid={pid},fd=6))'


def endpoint(exposure: str = "direct", auth: bool = True, port: int = 7860) -> dict[str, Any]:
    if exposure == "proxy":
        return {"exposure": "proxy", "bind_address": "127.0.0.1", "backend_port": port,
                "public_ports": [{"port": 80, "proto": "tcp", "purpose": "http"},
                                 {"port": 443, "proto": "tcp", "purpose": "https"}],
                "public_address": PUBLIC, "scheme": "https", "public_port": 443, "root_path": "/",
                "url": f"https://{PUBLIC}/", "backend_url": f"http://127.0.0.1:{port}/", "health_path": "/healthz",
                "auth": auth}
    if exposure == "local":
        return {"exposure": "local", "bind_address": "127.0.0.1", "backend_port": port, "public_ports": [],
                "public_address": "127.0.0.1", "scheme": "http", "public_port": None, "root_path": "/",
                "url": f"http://127.0.0.1:{port}/", "health_path": "/healthz", "auth": auth}
    return {"exposure": "direct", "bind_address": "0.0.0.0", "backend_port": port,
            "public_ports": [{"port": port, "proto": "tcp", "purpose": "app"}], "public_address": PUBLIC,
            "scheme": "http", "public_port": port, "root_path": "/", "url": f"http://{PUBLIC}:{port}/",
            "health_path": "/healthz", "auth": auth}


def healthy_direct() -> dict[str, Any]:
    """A converged direct deployment with login: every check passes."""
    return {
        "host": "gpu1",
        "endpoint": endpoint("direct"),
        "service": {"unit": "cosyvoice.service", "properties": dict(ACTIVE), "journal": []},
        "proxy_service": {"unit": "nginx.service", "properties": {}},
        "health": {"url": "http://127.0.0.1:7860/healthz", "status": 200, "ok": True, "msg": "OK"},
        "listeners": ss(app_line(), 'LISTEN 0 128 0.0.0.0:22 0.0.0.0:* users:(("sshd",pid=300,fd=3))'),
        "pid_units": {str(APP_PID): "cosyvoice.service", "300": "ssh.service"},
        "expected": {"app_unit": "cosyvoice.service", "proxy_unit": "nginx.service",
                     "app_process_names": ["python3", "python"], "proxy_process_names": ["nginx"]},
        "firewall": {"checked": True, "state": {"backend": "ufw", "active": True,
                                                "allowed_ports": [{"port": 22, "proto": "tcp"},
                                                                  {"port": 7860, "proto": "tcp"}]}},
        "security_group": {"checked": False, "note": "no cloud provider configured"},
        "remote": {
            "checked": True, "address": PUBLIC, "ca": "system CAs",
            "tcp": [{"port": 7860, "ok": True, "msg": ""}],
            "http": {"url": f"http://{PUBLIC}:7860/", "status": 200, "ok": True, "msg": "OK"},
            "auth": {"checked": True, "kind": "gradio", "probe_url": f"http://{PUBLIC}:7860/config",
                     "unauth_status": 401, "login_checked": True, "login_status": 200, "authed_status": 200},
            "backend": {"checked": False},
        },
    }


def healthy_proxy() -> dict[str, Any]:
    ev = healthy_direct()
    ev["endpoint"] = endpoint("proxy")
    ev["proxy_service"]["properties"] = dict(ACTIVE, MainPID="900")
    ev["listeners"] = ss(
        app_line("127.0.0.1:7860"),
        'LISTEN 0 511 0.0.0.0:443 0.0.0.0:* users:(("nginx",pid=901,fd=7),("nginx",pid=900,fd=7))',
        'LISTEN 0 511 0.0.0.0:80 0.0.0.0:* users:(("nginx",pid=901,fd=6),("nginx",pid=900,fd=6))',
        'LISTEN 0 511 [::]:443 [::]:* users:(("nginx",pid=901,fd=9),("nginx",pid=900,fd=9))',
        'LISTEN 0 511 [::]:80 [::]:* users:(("nginx",pid=901,fd=8),("nginx",pid=900,fd=8))',
    )
    ev["pid_units"] = {str(APP_PID): "cosyvoice.service", "900": "nginx.service", "901": "nginx.service"}
    ev["firewall"]["state"]["allowed_ports"] = ["22/tcp", "80/tcp", "443/tcp"]
    ev["remote"].update({
        "ca": "reports/gpu1/server-ca.pem",
        "tcp": [{"port": 80, "ok": True, "msg": ""}, {"port": 443, "ok": True, "msg": ""}],
        "http": {"url": f"https://{PUBLIC}/", "status": 401, "ok": False, "msg": "HTTP Error 401: Unauthorized"},
        "auth": {"checked": True, "kind": "basic", "probe_url": f"https://{PUBLIC}/", "unauth_status": 401,
                 "login_checked": True, "login_status": 0, "authed_status": 200},
        "backend": {"checked": True, "port": 7860, "reachable": False, "msg": ""},
    })
    return ev


def diagnose(ev: dict[str, Any]) -> dict[str, Any]:
    result = dg.cosyvoice_diagnose(copy.deepcopy(ev))
    json.dumps(result)  # the report must serialise
    return result


def statuses(result: dict[str, Any]) -> dict[str, str]:
    return {c["id"]: c["status"] for c in result["checks"]}


# -- passing runs -----------------------------------------------------------

def test_healthy_direct_passes() -> None:
    r = diagnose(healthy_direct())
    assert r["ok"] and r["layer"] is None and r["failed_layers"] == []
    assert r["message"] == f"gpu1: all checks passed; users reach http://{PUBLIC}:7860/"
    st = statuses(r)
    assert st["service.active"] == st["service.enabled"] == st["service.health"] == "ok"
    assert st["bind.public"] == st["port_conflict.7860"] == st["os_firewall"] == "ok"
    assert st["auth.required"] == st["auth.login"] == st["http"] == "ok"
    assert st["security_group"] == st["tls"] == "skip"


def test_healthy_proxy_passes() -> None:
    r = diagnose(healthy_proxy())
    assert r["ok"], [c for c in r["checks"] if c["status"] == "fail"]
    st = statuses(r)
    assert st["bind.backend"] == st["bind.public.443"] == st["bind.public.80"] == st["bind.backend_remote"] == "ok"
    assert st["port_conflict.443"] == st["proxy.active"] == st["tls"] == "ok"


def test_local_exposure_needs_no_remote_checks() -> None:
    ev = healthy_direct()
    ev["endpoint"] = endpoint("local")
    ev["listeners"] = ss(app_line("127.0.0.1:7860"))
    ev["remote"] = {"checked": False, "note": "local exposure: nothing is reachable from other hosts by design"}
    r = diagnose(ev)
    assert r["ok"]
    assert statuses(r)["client.tcp"] == "skip"


def real_direct() -> dict[str, Any]:
    """The converged molecule/verify host, from its real ss, cgroup and systemctl output."""
    ev = healthy_direct()
    ev["service"]["properties"] = sd.parse_show(data("systemctl/cosyvoice-active.txt"))
    ev["listeners"] = ls.ss_listeners(data("ss/cosyvoice-direct-iproute2-6.1.txt"))
    ev["pid_units"] = ls.proc_cgroup_units(data("cgroup/cosyvoice-direct.txt"))
    return ev


def test_real_converged_host_passes() -> None:
    r = diagnose(real_direct())
    assert r["ok"], r["message"]
    held = {c["id"]: c for c in r["checks"]}["port_conflict.7860"]["summary"]
    assert held.startswith("port 7860 held by python (pid ") and held.endswith(", cosyvoice.service)")


def test_real_stopped_service() -> None:
    ev = real_direct()
    ev["service"]["properties"] = sd.parse_show(data("systemctl/cosyvoice-stopped.txt"))
    ev["listeners"], ev["pid_units"] = [], {}
    ev["health"] = {"status": -1, "msg": "<urlopen error [Errno 111] Connection refused>"}
    r = diagnose(ev)
    assert (r["layer"], r["check"]) == ("service", "service.active")
    assert "cosyvoice.service is stopped (inactive/dead)" in r["cause"]


def test_real_loopback_bind() -> None:
    ev = real_direct()
    ev["listeners"] = ls.ss_listeners(data("ss/cosyvoice-loopback-iproute2-6.1.txt"))
    ev["pid_units"] = {str(p["pid"]): "cosyvoice.service" for x in ev["listeners"] for p in x["processes"]}
    r = diagnose(ev)
    assert (r["layer"], r["check"]) == ("bind", "bind.public")
    assert "listens on 127.0.0.1:7860" in r["cause"]


def test_real_port_conflict_with_the_launchers_own_error() -> None:
    ev = real_direct()
    ev["service"]["properties"] = sd.parse_show(data("systemctl/cosyvoice-port-conflict.txt"))
    ev["service"]["journal"] = data("systemctl/cosyvoice-port-conflict.journal.txt").splitlines()
    ev["listeners"] = ls.ss_listeners(data("ss/cosyvoice-port-conflict-iproute2-6.1.txt"))
    ev["pid_units"] = ls.proc_cgroup_units(data("cgroup/cosyvoice-port-conflict.txt"))
    ev["health"] = {"status": 404, "msg": "File not found"}
    r = diagnose(ev)
    assert r["layer"] == "port_conflict"
    assert re.search(r"already taken by python3 \(pid \d+, squatter\.service\)", r["cause"]), r["cause"]
    service = {c["id"]: c for c in r["checks"]}["service.active"]
    assert service["status"] == "fail"
    assert service["cause"].endswith("Last log line: ERROR cosyvoice_launcher: port 7860 on 0.0.0.0 is already in use "
                                     "by another process; find it with: ss -ltnp 'sport = :7860'  (or: lsof -i :7860); "
                                     "stop it or choose another cosyvoice_server_port")


# -- layer 1: service ----------------------------------------------------------

def test_service_stopped() -> None:
    ev = healthy_direct()
    ev["service"]["properties"] = dict(ACTIVE, ActiveState="inactive", SubState="dead", MainPID="0")
    ev["listeners"] = []
    ev["health"] = {"url": "http://127.0.0.1:7860/healthz", "status": -1,
                    "msg": "Status code was -1 and not [200]: Request failed: <urlopen error [Errno 111] Connection refused>"}
    ev["remote"]["tcp"] = [{"port": 7860, "ok": False, "msg": "Timeout when waiting for 172.17.0.5:7860"}]
    ev["remote"]["http"] = {"status": -1, "msg": "Request failed: <urlopen error [Errno 111] Connection refused>"}
    r = diagnose(ev)
    assert (r["ok"], r["layer"], r["layer_number"], r["check"]) == (False, "service", 1, "service.active")
    assert "stopped" in r["cause"] and "systemctl enable --now cosyvoice.service" in r["fix"]
    assert r["symptom"].startswith("page does not open")
    assert "服务未启动" in r["seed"]
    assert "client" in r["failed_layers"]  # the symptom is listed too, but the cause is named
    assert statuses(r)["bind.port"] == "skip"


def test_service_crash_loop_quotes_the_error_line() -> None:
    ev = healthy_direct()
    ev["service"]["properties"] = sd.parse_show(data("systemctl/crash-loop.txt"))
    ev["service"]["journal"] = data("systemctl/crash-loop.journal.txt").splitlines()
    ev["listeners"] = []
    ev["health"]["status"] = -1
    r = diagnose(ev)
    assert r["layer"] == "service"
    assert "exited with status 3" in r["cause"]
    assert r["cause"].endswith("Last log line: ERROR port 7860 on 0.0.0.0 is already in use")
    assert "journalctl -u cosyvoice.service" in r["fix"]


def test_service_still_starting() -> None:
    ev = healthy_direct()
    ev["service"]["properties"] = dict(ACTIVE, ActiveState="activating", SubState="start")
    r = diagnose(ev)
    assert r["layer"] == "service" and "not finished starting" in r["cause"]


def test_service_not_enabled() -> None:
    ev = healthy_direct()
    ev["service"]["properties"]["UnitFileState"] = "disabled"
    r = diagnose(ev)
    assert (r["layer"], r["check"]) == ("service", "service.enabled")
    assert r["fix"] == "systemctl enable cosyvoice.service"


def test_health_endpoint_failing_while_active() -> None:
    ev = healthy_direct()
    ev["health"] = {"url": "http://127.0.0.1:7860/healthz", "status": 503, "msg": "Service Unavailable"}
    r = diagnose(ev)
    assert (r["layer"], r["check"]) == ("service", "service.health")
    assert "503" in r["cause"]


def test_no_unit_and_nothing_listening() -> None:
    ev = healthy_direct()
    ev["service"]["properties"] = sd.parse_show(data("systemctl/not-found.txt"))
    ev["listeners"] = []
    ev["health"]["status"] = -1
    r = diagnose(ev)
    assert r["layer"] == "service" and "no systemd unit cosyvoice.service" in r["cause"].replace("there is no", "no systemd unit")
    assert "-e cosyvoice_service_name=<unit>" in r["fix"]


def test_app_started_by_hand_is_only_a_warning() -> None:
    # A host this project did not deploy: `python3 app.py` in a shell, bound to 0.0.0.0.
    ev = healthy_direct()
    ev["service"]["properties"] = sd.parse_show(data("systemctl/not-found.txt"))
    ev["listeners"] = ls.ss_listeners(data("ss/http-server-squatter-iproute2-6.1.txt"))
    ev["pid_units"] = ls.proc_cgroup_units(data("cgroup/hybrid-bookworm-docker.txt"))
    r = diagnose(ev)
    assert r["ok"]
    assert [w["id"] for w in r["warnings"]] == ["service.unit"]
    assert "python3 (pid 49, squatter.service)" in r["warnings"][0]["summary"]
    assert "taken to be the app" in {c["id"]: c for c in r["checks"]}["port_conflict.7860"]["summary"]


def test_proxy_nginx_down() -> None:
    ev = healthy_proxy()
    ev["proxy_service"]["properties"] = dict(ACTIVE, ActiveState="failed", SubState="failed", Result="exit-code")
    r = diagnose(ev)
    assert (r["layer"], r["check"]) == ("service", "proxy.active")
    assert "nginx -t" in r["fix"]


# -- layer 2: bind --------------------------------------------------------------

@pytest.mark.parametrize("local", ["127.0.0.1:7860", "[::1]:7860", "[::ffff:127.0.0.1]:7860", "127.0.0.1%lo:7860"])
def test_bound_to_loopback_in_direct_mode(local: str) -> None:
    ev = healthy_direct()
    ev["listeners"] = ss(app_line(local))
    ev["remote"]["tcp"] = [{"port": 7860, "ok": False, "msg": "Timeout when waiting for 172.17.0.5:7860"}]
    ev["remote"]["http"] = {"status": -1, "msg": "Request failed: <urlopen error [Errno 111] Connection refused>"}
    r = diagnose(ev)
    assert (r["layer"], r["layer_number"], r["check"]) == ("bind", 2, "bind.public")
    assert f"listens on {local}" in r["cause"] and "only programs on the server itself" in r["cause"]
    assert "0.0.0.0" in r["fix"] and "cosyvoice_exposure: direct" in r["fix"]
    assert r["seed"] == "server_name 错误 -> 修改为 0.0.0.0 并重启服务"


def test_ipv6_only_wildcard_with_ipv4_users() -> None:
    ev = healthy_direct()
    ev["listeners"] = ss(app_line("[::]:7860"))
    r = diagnose(ev)
    assert r["layer"] == "bind" and "IPv6 clients only" in r["cause"]
    ev["listeners"] = ss(app_line("*:7860"))
    assert diagnose(ev)["ok"]


def test_bound_to_another_address_is_a_warning() -> None:
    ev = healthy_direct()
    ev["listeners"] = ss(app_line("10.0.0.5:7860"))
    r = diagnose(ev)
    assert r["ok"] and [w["id"] for w in r["warnings"]] == ["bind.public"]


def test_service_listening_on_another_port() -> None:
    ev = healthy_direct()
    ev["listeners"] = ss(app_line("0.0.0.0:7861"))
    ev["health"]["status"] = -1
    r = diagnose(ev)
    # the health request fails too, but the service runs: the port mismatch is reported where it is seen
    assert "bind" in r["failed_layers"]
    bind = {c["id"]: c for c in r["checks"]}["bind.port"]
    assert bind["status"] == "fail" and "listens on 7861 while the endpoint says 7860" in bind["cause"]


def test_proxy_backend_exposed() -> None:
    ev = healthy_proxy()
    ev["listeners"] = [x for x in ev["listeners"] if x["port"] != 7860] + ss(app_line("0.0.0.0:7860"))
    ev["remote"]["backend"] = {"checked": True, "port": 7860, "reachable": True,
                               "msg": "Timeout when waiting for 172.17.0.5:7860 to stop."}
    r = diagnose(ev)
    assert (r["layer"], r["check"]) == ("bind", "bind.backend")
    assert "bypasses nginx" in r["cause"]
    assert r["symptom"].startswith("the app's own port is open next to the proxy")
    assert r["seed"] == "反向代理 + HTTPS: proxy_pass http://127.0.0.1:7860, 隐藏真实端口"
    assert statuses(r)["bind.backend_remote"] == "fail"


def test_proxy_nginx_on_loopback_only() -> None:
    ev = healthy_proxy()
    ev["listeners"] = [x for x in ev["listeners"] if x["port"] != 443] + ss(
        'LISTEN 0 511 127.0.0.1:443 0.0.0.0:* users:(("nginx",pid=900,fd=7))')
    r = diagnose(ev)
    assert (r["layer"], r["check"]) == ("bind", "bind.public.443")


# -- layer 3: port conflict -----------------------------------------------------

def test_port_held_by_another_process_while_the_service_crash_loops() -> None:
    """The real case: `python3 -m http.server 7860` (squatter.service) holds the port, the unit crash-loops."""
    ev = healthy_direct()
    ev["service"]["properties"] = sd.parse_show(data("systemctl/crash-loop.txt"))
    ev["service"]["journal"] = data("systemctl/crash-loop.journal.txt").splitlines()
    ev["listeners"] = ls.ss_listeners(data("ss/http-server-squatter-iproute2-6.1.txt"))
    ev["pid_units"] = ls.proc_cgroup_units(data("cgroup/hybrid-bookworm-docker.txt"))
    ev["health"] = {"url": "http://127.0.0.1:7860/healthz", "status": 404, "msg": "HTTP Error 404: File not found"}
    r = diagnose(ev)
    assert (r["layer"], r["layer_number"]) == ("port_conflict", 3)  # named before the crashed service
    assert "python3 (pid 49, squatter.service)" in r["cause"] and "lsof -i :7860" in r["cause"]
    assert r["fix"].startswith("free the port: systemctl stop squatter.service; then systemctl restart cosyvoice.service")
    assert r["failed_layers"][:2] == ["service", "port_conflict"]
    assert r["seed"] == "端口被占用或服务崩溃 -> lsof -i :7860 查杀冲突进程"


def test_port_held_by_a_process_outside_systemd() -> None:
    ev = healthy_direct()
    ev["service"]["properties"] = dict(ACTIVE, ActiveState="activating", SubState="auto-restart", Result="exit-code",
                                       ExecMainStatus="3")
    ev["listeners"] = ss('LISTEN 0 5 0.0.0.0:7860 0.0.0.0:* users:(("node",pid=4242,fd=19))')
    ev["pid_units"] = {"4242": ""}
    r = diagnose(ev)
    assert r["layer"] == "port_conflict" and "node (pid 4242)" in r["cause"] and "kill 4242" in r["fix"]


def test_nginx_port_held_by_apache() -> None:
    ev = healthy_proxy()
    ev["listeners"] = [x for x in ev["listeners"] if x["port"] != 443] + ss(
        'LISTEN 0 511 *:443 *:* users:(("apache2",pid=700,fd=4))')
    ev["pid_units"]["700"] = "apache2.service"
    r = diagnose(ev)
    assert r["layer"] == "port_conflict" and "apache2 (pid 700, apache2.service)" in r["cause"]
    assert "systemctl stop apache2.service" in r["fix"] and "systemctl restart nginx.service" in r["fix"]


def test_no_process_information_skips_the_conflict_check() -> None:
    ev = healthy_direct()
    ev["listeners"] = ss("LISTEN 0 128 0.0.0.0:7860 0.0.0.0:*")
    r = diagnose(ev)
    assert r["ok"] and statuses(r)["port_conflict.7860"] == "skip"


# -- layers 4 and 5: firewall, security group -----------------------------------

@pytest.mark.parametrize(("backend", "command"), [
    ("ufw", "ufw allow 7860/tcp"),
    ("firewalld", "firewall-cmd --permanent --add-port=7860/tcp && firewall-cmd --reload"),
    ("nftables", "nft add rule inet filter input tcp dport 7860 accept"),
])
def test_firewall_blocks_the_port(backend: str, command: str) -> None:
    ev = healthy_direct()
    ev["firewall"]["state"] = {"backend": backend, "active": True, "allowed_ports": ["22/tcp"]}
    ev["remote"]["tcp"] = [{"port": 7860, "ok": False, "msg": "Timeout when waiting for 172.17.0.5:7860"}]
    ev["remote"]["http"] = {"status": -1, "msg": "Request failed: <urlopen error timed out>"}
    r = diagnose(ev)
    assert (r["layer"], r["layer_number"]) == ("os_firewall", 4)
    assert f"({backend}) is active and does not allow 7860/tcp" in r["cause"]
    assert command in r["fix"] and "--tags firewall" in r["fix"]


@pytest.mark.parametrize("allowed", [[7860], ["7860"], ["7860/tcp"], [{"port": "7860", "proto": "tcp"}],
                                     [{"port": 7860, "protocol": "TCP"}]])
def test_firewall_allowed_port_spellings(allowed: list[Any]) -> None:
    ev = healthy_direct()
    ev["firewall"]["state"]["allowed_ports"] = allowed
    assert diagnose(ev)["ok"]


def test_firewall_inactive_or_not_checked() -> None:
    ev = healthy_direct()
    ev["firewall"]["state"] = {"backend": "ufw", "active": False, "allowed_ports": []}
    assert diagnose(ev)["ok"]
    ev["firewall"] = {"checked": False, "note": "role os_firewall not found"}
    r = diagnose(ev)
    assert r["ok"] and statuses(r)["os_firewall"] == "skip"


def test_firewall_state_with_per_port_verdicts() -> None:
    """os_firewall_state as the os_firewall role's status tasks publish it (ports with a verdict each)."""
    ev = healthy_direct()
    port = {"port": 7860, "proto": "tcp", "allowed": False, "scope": "none",
            "families": {"ipv4": "none", "ipv6": "none"}, "reason": "ufw: default deny incoming, no rule allows 7860/tcp"}
    ev["firewall"]["state"] = {"backend": "ufw", "active": True, "default_incoming": "deny", "managed": True,
                               "ports": [port], "allowed_ports": []}
    r = diagnose(ev)
    assert r["layer"] == "os_firewall" and "(ufw: default deny incoming, no rule allows 7860/tcp)" in r["cause"]
    port.update(allowed=True, scope="some", reason="allowed from 10.0.0.0/8 only")
    ev["firewall"]["state"]["allowed_ports"] = [{"port": 7860, "proto": "tcp"}]
    r = diagnose(ev)
    assert r["ok"] and "some sources only" in r["warnings"][0]["summary"]
    port.update(allowed=None, scope="unknown", reason="nft: jump to a chain this evaluator does not model")
    r = diagnose(ev)
    assert r["ok"] and "cannot tell" in r["warnings"][0]["summary"]
    port.update(allowed=True, scope="any", reason="ufw rule 7860/tcp ALLOW IN Anywhere")
    r = diagnose(ev)
    assert r["ok"] and r["warnings"] == [] and statuses(r)["os_firewall"] == "ok"


def test_firewall_state_unknown_without_root() -> None:
    ev = healthy_direct()
    ev["firewall"]["state"] = {"backend": "unknown", "active": None, "ports": [
        {"port": 7860, "proto": "tcp", "allowed": None, "scope": "unknown",
         "reason": "status.yml needs root (become: true) to read the firewall"}], "allowed_ports": []}
    r = diagnose(ev)
    assert r["ok"] and "needs root" in r["warnings"][0]["summary"]


def test_security_group_missing_rule() -> None:
    ev = healthy_direct()
    ev["security_group"] = {"checked": True, "result": {
        "provider": "aws", "instance_id": "i-0abc", "ok": False, "skipped": False,
        "missing": [{"port": 7860, "proto": "tcp", "cidr": "0.0.0.0/0"}]}}
    ev["remote"]["tcp"] = [{"port": 7860, "ok": False, "msg": "Timeout when waiting for 172.17.0.5:7860"}]
    r = diagnose(ev)
    assert (r["layer"], r["layer_number"]) == ("security_group", 5)
    assert "7860/tcp from 0.0.0.0/0" in r["cause"] and "--tags security_group" in r["fix"]
    ev["security_group"]["result"].update(ok=True, missing=[])
    assert diagnose(ev)["layer"] == "client"  # the group allows it now: what is left is the client side


# -- layer 6: client -------------------------------------------------------------

@pytest.mark.parametrize(("msg", "kind", "fix"), [
    ("Request failed: <urlopen error timed out>", "timeout", "dropped on the way"),
    ("Request failed: <urlopen error [Errno 111] Connection refused>", "refused", "not this host"),
    ("Request failed: <urlopen error [Errno 113] No route to host>", "unreachable", "no route"),
    ("Request failed: <urlopen error [Errno -2] Name or service not known>", "dns", "does not resolve"),
])
def test_client_cannot_connect_although_the_host_is_fine(msg: str, kind: str, fix: str) -> None:
    ev = healthy_direct()
    ev["remote"]["tcp"] = [{"port": 7860, "ok": False, "msg": "Timeout when waiting for 172.17.0.5:7860"}]
    ev["remote"]["http"] = {"url": f"http://{PUBLIC}:7860/", "status": -1, "msg": msg}
    r = diagnose(ev)
    assert (r["layer"], r["layer_number"], r["check"]) == ("client", 6, "client.tcp.7860")
    assert f"({kind})" in r["cause"] and fix in r["fix"]


def test_wrong_root_path_gives_404() -> None:
    ev = healthy_direct()
    ev["remote"]["http"]["status"] = 404
    r = diagnose(ev)
    assert (r["layer"], r["check"]) == ("client", "client.http") and "cosyvoice_root_path" in r["fix"]


# -- layers 7-9: tls, auth, http --------------------------------------------------

def test_tls_certificate_not_trusted() -> None:
    ev = healthy_proxy()
    ev["remote"]["http"] = {"url": f"https://{PUBLIC}/", "status": -1, "msg": (
        "Request failed: <urlopen error [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: "
        "IP address mismatch, certificate is not valid for '172.17.0.5'. (_ssl.c:1000)>")}
    ev["remote"]["auth"]["unauth_status"] = -1
    r = diagnose(ev)
    assert (r["layer"], r["layer_number"]) == ("tls", 7)
    assert "not trusted for 172.17.0.5" in r["cause"] and "subjectAltName" in r["fix"]


def test_tls_self_signed_without_a_trust_anchor() -> None:
    """diagnose.yml on a host whose self-signed certificate it could not fetch (seen live)."""
    ev = healthy_proxy()
    ev["remote"]["ca"] = "system CAs"
    ev["remote"]["http"] = {"url": f"https://{PUBLIC}/", "status": -1, "msg": (
        "<urlopen error [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate "
        "(_ssl.c:1000)>")}
    ev["remote"]["auth"]["unauth_status"] = -1
    r = diagnose(ev)
    assert r["layer"] == "tls" and "-e verify_host_ca_path=" in r["fix"]


def test_login_not_enforced() -> None:
    ev = healthy_direct()
    ev["remote"]["auth"]["unauth_status"] = 200
    r = diagnose(ev)
    assert (r["layer"], r["check"]) == ("auth", "auth.required")
    assert "without credentials" in r["cause"] and "cosyvoice_auth_users" in r["fix"]


def test_login_refused() -> None:
    ev = healthy_direct()
    ev["remote"]["auth"].update(login_status=400, authed_status=401)
    r = diagnose(ev)
    assert (r["layer"], r["check"]) == ("auth", "auth.login") and "refused (400" in r["cause"]


def test_login_asked_although_auth_is_off() -> None:
    ev = healthy_direct()
    ev["endpoint"]["auth"] = False
    ev["remote"]["auth"] = {"checked": True, "kind": "none", "probe_url": ev["endpoint"]["url"], "unauth_status": 401,
                            "login_checked": False}
    r = diagnose(ev)
    assert (r["layer"], r["check"]) == ("auth", "auth.required")


def test_no_credentials_skips_the_login() -> None:
    ev = healthy_direct()
    ev["remote"]["auth"].update(login_checked=False, note="no users in verify_auth_users")
    r = diagnose(ev)
    assert r["ok"] and statuses(r)["auth.login"] == "skip"


def test_proxy_bad_gateway() -> None:
    ev = healthy_proxy()
    ev["remote"]["auth"]["authed_status"] = 502
    r = diagnose(ev)
    assert (r["layer"], r["layer_number"]) == ("http", 9)
    assert "nginx answers 502" in r["cause"] and "127.0.0.1:7860" in r["cause"]


# -- order and rendering ----------------------------------------------------------

def test_layers_are_in_the_seed_order() -> None:
    assert dg.LAYER_IDS == ("service", "bind", "port_conflict", "os_firewall", "security_group", "client", "tls",
                            "auth", "http")


def test_first_failing_layer_wins() -> None:
    ev = healthy_direct()
    ev["listeners"] = ss(app_line("127.0.0.1:7860"))  # bind
    ev["firewall"]["state"]["allowed_ports"] = []  # os_firewall
    ev["remote"]["tcp"][0].update(ok=False, msg="Timeout")  # client
    r = diagnose(ev)
    assert r["layer"] == "bind" and r["failed_layers"] == ["bind", "os_firewall", "client"]


def test_text_report() -> None:
    ev = healthy_direct()
    ev["time"] = "2026-11-25T01:00:00Z"
    ev["listeners"] = ss(app_line("127.0.0.1:7860"))
    text = dg.cosyvoice_diagnosis_text(diagnose(ev), "reports/gpu1/report.json")
    assert "Result:   FAILED at layer 2/9: bind (Listening on the wrong address or port)" in text
    assert "Cause:    cosyvoice.service (direct exposure) listens on 127.0.0.1:7860" in text
    assert "Fix:      listen on all interfaces" in text
    assert "Seed row: server_name 错误" in text
    assert "  [FAIL] 2.bind            port 7860 is bound to loopback only (127.0.0.1:7860)" in text
    assert "Checked:  2026-11-25T01:00:00Z" in text and text.rstrip().endswith("JSON: reports/gpu1/report.json")
    ok = dg.cosyvoice_diagnosis_text(diagnose(healthy_direct()))
    assert "Result:   OK, every layer passed" in ok and "[FAIL]" not in ok
    assert json.loads(dg.cosyvoice_diagnosis_json(diagnose(healthy_direct())))["ok"] is True


def test_missing_evidence_skips_instead_of_crashing() -> None:
    r = diagnose({"endpoint": endpoint("direct")})
    assert r["ok"] and set(statuses(r).values()) == {"skip", "ok"}
    with pytest.raises(TypeError):
        dg.cosyvoice_diagnose("nope")  # type: ignore[arg-type]


# -- new probe facts ------------------------------------------------------------------

def timed_out(phase: str) -> dict[str, Any]:
    """The host_probe module's health result when the request timed out (samples: module_utils/health.py)."""
    msg = "<urlopen error timed out>" if phase == "connect" else "timed out"
    return {"url": "http://127.0.0.1:7860/healthz", "outcome": "timeout", "timeout_phase": phase, "status": -1,
            "ok": False, "msg": msg, "attempts": 1, "waited": 0.0}


def test_local_health_dropped_while_listening_is_a_packet_filter() -> None:
    """Active, listening, and the host's own request gets no answer to its SYN: a DROP rule, not a dead service."""
    ev = real_direct()
    ev["health"] = timed_out("connect")
    r = diagnose(ev)
    assert (r["layer"], r["layer_number"], r["check"]) == ("os_firewall", 4, "os_firewall.local")
    assert r["title"] == "Host firewall blocks the port"
    assert "a packet filter on the host drops traffic to port 7860" in r["cause"]
    assert "listens on 0.0.0.0:7860" in r["cause"] and "nft list ruleset" in r["fix"]
    assert r["symptom"].startswith("connection timed out") and "防火墙未放行" in r["seed"]
    st = statuses(r)
    assert st["service.active"] == "ok" and st["service.health"] == "skip" and st["os_firewall"] == "ok"
    assert "service" not in r["failed_layers"]


@pytest.mark.parametrize(("health", "active"), [
    (timed_out("read"), "active"),  # accepted but no answer: a hung process (SIGSTOP, deadlock)
    ({"url": "http://127.0.0.1:7860/healthz", "outcome": "refused", "timeout_phase": "", "status": -1,
      "msg": "<urlopen error [Errno 111] Connection refused>"}, "active"),
    (timed_out("connect"), "activating"),  # not active: the service layer, as before
])
def test_other_local_health_failures_stay_with_the_service(health: dict[str, Any], active: str) -> None:
    ev = real_direct()
    ev["health"] = health
    ev["service"]["properties"]["ActiveState"] = active
    r = diagnose(ev)
    assert r["layer"] == "service" and "os_firewall.local" not in statuses(r)


def test_local_health_timeout_with_nothing_listening_is_the_service() -> None:
    ev = real_direct()
    ev["health"] = timed_out("connect")
    ev["listeners"] = []
    r = diagnose(ev)
    assert (r["layer"], r["check"]) == ("service", "service.health")


def _with_unit_file(ev: dict[str, Any], unit: str = "cosyvoice.service") -> dict[str, Any]:
    """The real `systemctl show` sample (demo.service with two drop-ins, user demo) as the app's unit."""
    sample = data("systemctl/show-full-active.txt").replace("demo.service", unit)
    props = sd.parse_show(sample)
    ev["service"]["unit_file"] = sd.unit_file(props)
    ev["service"]["properties"].update({k: v for k, v in props.items() if k in sd.DEFINITION_PROPERTIES})
    return ev


def test_unit_file_of_the_managed_unit_is_ok() -> None:
    ev = _with_unit_file(real_direct())
    ev["expected"]["app_dropins_allowed"] = ev["service"]["unit_file"]["drop_in_paths"]
    ev["expected"]["app_user"] = "demo"
    ev["health"].update(outcome="ok", timeout_phase="", attempts=1, waited=0.0)
    out = diagnose(ev)
    assert out["ok"], out["message"]
    check = next(c for c in out["checks"] if c["id"] == "service.unit_file")
    assert check["status"] == "ok" and "kept drop-ins" in check["summary"], check


def test_a_drop_in_the_role_does_not_manage_is_named_with_its_file() -> None:
    """The issue's `systemctl edit cosyvoice` case: the drop-in, not the inventory, is the cause."""
    out = diagnose(_with_unit_file(real_direct()))
    assert (out["layer"], out["check"]) == ("service", "service.unit_file"), out["message"]
    drop = "/etc/systemd/system/cosyvoice.service.d/10-extra.conf"
    assert out["cause"].startswith(f"{drop} overrides the managed unit /etc/systemd/system/cosyvoice.service")
    assert "the running command is: /usr/bin/python3 -m http.server 7860 --bind 0.0.0.0" in out["cause"]
    assert out["fix"].startswith(f"remove it: rm {drop} /etc/systemd/system/cosyvoice.service.d/override.conf "
                                 "&& systemctl daemon-reload && systemctl restart cosyvoice.service")
    assert "cosyvoice_systemd_dropins_keep" in out["fix"]


def test_global_drop_ins_are_not_the_units_drift() -> None:
    ev = _with_unit_file(real_direct())
    ev["service"]["unit_file"]["drop_in_paths"] = ["/run/systemd/system/service.d/zzz-lxc-service.conf"]
    assert diagnose(ev)["ok"]


def test_a_unit_running_as_another_user() -> None:
    ev = _with_unit_file(real_direct())
    ev["expected"].update(app_dropins_allowed=ev["service"]["unit_file"]["drop_in_paths"], app_user="cosyvoice")
    out = diagnose(ev)
    assert (out["check"], out["cause"]) == ("service.unit_file", "cosyvoice.service runs as user demo although "
                                            "site.yml deploys it as cosyvoice (/etc/systemd/system/cosyvoice.service)")


FOREIGN_DROP = {"port": 7860, "proto": "tcp", "family": "ipv4", "source": "iptables-nft", "table": "filter",
                "chain": "INPUT", "rule": "-A INPUT -p tcp -m tcp --dport 7860 -j DROP", "verdict": "drop",
                "remove_command": "iptables-nft -D INPUT -p tcp -m tcp --dport 7860 -j DROP", "kept_because": None}


def test_a_foreign_rule_that_drops_the_port_is_named_with_its_remove_command() -> None:
    """The issue's `iptables -I INPUT -p tcp --dport 7860 -j DROP` next to ufw."""
    ev = healthy_direct()
    ev["firewall"]["state"].update(ports=[{"port": 7860, "proto": "tcp", "allowed": False, "scope": "none",
                                           "reason": "dropped by a rule that ufw did not write"}],
                                   foreign_blocks=[FOREIGN_DROP])
    ev["health"].update(status=-1, ok=False, outcome="timeout", timeout_phase="connect", msg="timed out")
    out = diagnose(ev)
    assert (out["layer"], out["check"]) == ("os_firewall", "os_firewall"), out["message"]
    assert "`-A INPUT -p tcp -m tcp --dport 7860 -j DROP` (iptables-nft filter INPUT)" in out["cause"]
    assert out["fix"].startswith("remove it: iptables-nft -D INPUT -p tcp -m tcp --dport 7860 -j DROP;")
    assert "service not running" not in out["message"].lower()


@pytest.mark.parametrize(("posture", "check"), [
    ({"firewall_active": False, "default_incoming": "unknown", "backend": "ufw"}, "no host firewall filters incoming"),
    ({"firewall_active": True, "default_incoming": "allow", "backend": "ufw"}, "ufw accepts incoming connections"),
])
def test_firewall_posture_fails_unless_downgraded(posture: dict[str, Any], check: str) -> None:
    """`ufw disable` / `ufw default allow incoming`: every layer works, but the host is exposed."""
    ev = healthy_direct()
    ev["firewall"]["state"]["posture"] = posture
    out = diagnose(ev)
    assert (out["layer"], out["check"]) == ("os_firewall", "os_firewall.posture"), out["message"]
    assert check in out["message"]
    ev["firewall"]["posture_policy"] = "warn"
    warned = diagnose(ev)
    assert warned["ok"] and [w["id"] for w in warned["warnings"]] == ["os_firewall.posture"]
    ev["firewall"]["posture_policy"] = "off"
    assert not any(c["id"].startswith("os_firewall.posture") for c in diagnose(ev)["checks"])


def test_a_listening_port_that_is_not_public_must_not_answer_from_the_controller() -> None:
    ev = healthy_direct()
    ev["firewall"]["state"]["posture"] = {"firewall_active": True, "default_incoming": "deny", "backend": "ufw"}
    ev["listeners"] += ss('LISTEN 0 5 0.0.0.0:9999 0.0.0.0:* users:(("python3",pid=777,fd=3))')
    ev["remote"]["exposed"] = {"checked": True, "tried": {"9999": "open"},
                               "listeners": [x for x in ev["listeners"] if x["port"] == 9999]}
    out = diagnose(ev)
    assert (out["check"], out["layer_number"]) == ("os_firewall.exposed", 4), out["message"]
    assert out["cause"].startswith("python3 (pid 777) listen(s) on 9999 and the controller can connect")
    ev["remote"]["exposed"]["tried"] = {"9999": "timeout"}
    assert diagnose(ev)["ok"]


# -- the tables ------------------------------------------------------------------------

def test_findings_are_data_for_known_layers() -> None:
    assert set(dg.FINDINGS) == set(dg.LAYER_IDS)
    for layer, texts in dg.FINDINGS.items():
        for key, text in texts.items():
            check, _, outcome = key.partition(":")
            assert check and outcome, key
            assert text.status in (dg.OK, dg.FAIL, dg.WARN, dg.SKIP), key
            if text.status in (dg.FAIL, dg.WARN):
                assert text.fix, f"{layer} {key} has no fix"


def test_every_check_comes_from_the_table() -> None:
    """Each check a report lists has the texts of a FINDINGS entry of its own layer."""
    keys = {(layer, key.partition(":")[0]) for layer, texts in dg.FINDINGS.items() for key in texts}
    for ev in (healthy_direct(), healthy_proxy(), {"endpoint": endpoint("local")}):
        for check in diagnose(ev)["checks"]:
            base = re.sub(r"\.\d+$", "", check["id"])
            assert (check["layer"], base) in keys, check


def test_rule_functions_are_short() -> None:
    """The rule engine stays readable: no function over 40 lines (classification is explicit, texts are data)."""
    import ast
    tree = ast.parse(Path(dg.__file__).read_text(encoding="utf-8"))
    long = [(n.name, n.end_lineno - n.lineno + 1) for n in ast.walk(tree)
            if isinstance(n, ast.FunctionDef) and n.end_lineno - n.lineno + 1 > 40]  # type: ignore[operator]
    assert long == []


def test_no_dynamic_loading() -> None:
    assert "importlib" not in Path(dg.__file__).read_text(encoding="utf-8")


# -- helpers the role uses -----------------------------------------------------------

def test_probe_summary_keeps_no_request_data() -> None:
    refused = {"status": -1, "msg": "Status code was -1 and not [200, 401]: Request failed: <urlopen error [Errno 111] "
                                    "Connection refused>", "url": "http://h:7860/"}
    assert dg.cosyvoice_probe_summary(refused)["msg"] == "<urlopen error [Errno 111] Connection refused>"
    uri = {"status": 401, "msg": "HTTP Error 401: Unauthorized", "url": "https://h/", "elapsed": 0,
           "invocation": {"module_args": {"url_password": "secret"}}, "cookies_string": "access-token=abc"}
    assert dg.cosyvoice_probe_summary(uri) == {"status": 401, "ok": False, "msg": "HTTP Error 401: Unauthorized",
                                               "url": "https://h/", "elapsed": 0}
    loop = {"results": [
        {"item": {"port": 80, "proto": "tcp"}, "elapsed": 0, "state": "started", "port": 80},
        {"item": {"port": 443, "proto": "tcp"}, "elapsed": 3, "msg": "Timeout when waiting for h:443"},
        {"item": {"port": 8443}, "skipped": True},
    ]}
    assert dg.cosyvoice_probe_summary(loop) == [
        {"port": 80, "ok": True, "msg": "", "elapsed": 0},
        {"port": 443, "ok": False, "msg": "Timeout when waiting for h:443", "elapsed": 3}]
    assert dg.cosyvoice_probe_summary({"skipped": True}) == {}
    assert dg.cosyvoice_probe_summary({"skipped": True, "results": []}) == []
    assert dg.cosyvoice_probe_summary(None) == {}


def test_filters_are_registered() -> None:
    assert set(dg.FilterModule().filters()) == {
        "cosyvoice_diagnose", "cosyvoice_diagnosis_text", "cosyvoice_diagnosis_json", "cosyvoice_probe_summary",
        "cosyvoice_instance_evidence", "cosyvoice_upstream_evidence"}


def test_no_http_answer_skips_the_login_checks() -> None:
    ev = healthy_direct()
    ev["remote"]["auth"].update(unauth_status=-1, login_status=-1, authed_status=-1)
    assert statuses(diagnose(ev))["auth"] == "skip"
