"""Unit tests for the host_probe module (plugins/modules/host_probe.py) and what it is made of:
module_utils/systemd.py (`systemctl show` parsing), module_utils/health.py (the health request and
how its outcome is named), module_utils/listeners.py (ss + cgroup, also in test_listeners.py).

Command output comes from real samples (tests/unit/data/{systemctl,ss,cgroup}/); the health
request's failures are the exception shapes Python's urllib raises for each case, as seen on
Debian 12 (listed in module_utils/health.py): the refused, read-timeout and ok cases also run
for real against sockets on 127.0.0.1.
"""

from __future__ import annotations

import errno
import http.server
import json
import socket
import urllib.error
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

from ansible_collections.cosyvoice.deploy.plugins.module_utils import firewall_host as fh
from ansible_collections.cosyvoice.deploy.plugins.module_utils import health as hl
from ansible_collections.cosyvoice.deploy.plugins.module_utils import systemd as sd
from ansible_collections.cosyvoice.deploy.plugins.modules import host_probe as hp
from tests.lib.local_http import serve

_DATA = Path(__file__).resolve().parent / "data"
URL = "http://127.0.0.1:7860/healthz"


def data(path: str) -> str:
    return (_DATA / path).read_text(encoding="utf-8")


# -- systemctl show -------------------------------------------------------------------------

def test_state_properties_real_samples() -> None:
    props = sd.parse_show(data("systemctl/transient-active.txt"))
    assert props["ActiveState"] == "active" and props["MainPID"] == "49" and props["UnitFileState"] == "transient"
    both = data("systemctl/crash-loop.txt") + "\n" + data("systemctl/not-found.txt")
    listed = sd.parse_show_units(both)
    assert [p["LoadState"] for p in listed] == ["loaded", "not-found"]
    assert listed[0]["SubState"] == "auto-restart" and listed[0]["ExecMainStatus"] == "3"
    assert sd.parse_show_units("") == []


def test_definition_properties_with_drop_ins() -> None:
    state = sd.unit_state("demo.service", data("systemctl/show-full-active.txt"))
    assert state["found"] and state["error"] == ""
    assert state["properties"]["ActiveState"] == "active" and state["properties"]["MainPID"] == "98"
    assert "Environment" not in state["properties"]  # only redacted, below
    uf = state["unit_file"]
    assert uf["fragment_path"] == "/etc/systemd/system/demo.service"
    assert uf["drop_in_paths"] == ["/etc/systemd/system/demo.service.d/10-extra.conf",
                                   "/etc/systemd/system/demo.service.d/override.conf"]
    assert uf["exec_start"] == [{"path": "/usr/bin/python3", "argv": "/usr/bin/python3 -m http.server 7860 --bind 0.0.0.0",
                                 "ignore_errors": False}]
    assert (uf["user"], uf["group"], uf["working_directory"]) == ("demo", "demo", "/srv/demo")
    assert uf["environment_names"] == ["PYTHONUNBUFFERED", "GREETING", "HF_TOKEN", "PATHS", "EXTRA"]
    assert state["environment"] == {"PYTHONUNBUFFERED": "1", "GREETING": "hello world", "HF_TOKEN": "********",
                                    "PATHS": "/a:/b", "EXTRA": "1"}
    assert "hf_secret123" not in json.dumps(state)


def test_stopped_unit_keeps_its_definition() -> None:
    state = sd.unit_state("demo.service", data("systemctl/show-full-stopped.txt"))
    assert state["properties"]["ActiveState"] == "inactive" and state["properties"]["ExecMainStatus"] == "15"
    assert len(state["unit_file"]["drop_in_paths"]) == 2 and state["unit_file"]["exec_start"][0]["path"] == "/usr/bin/python3"


def test_several_exec_start_lines() -> None:
    props = sd.parse_show(data("systemctl/show-full-two-commands.txt"))
    assert props["ExecStart"].count("\n") == 1
    assert sd.parse_exec(props["ExecStart"]) == [
        {"path": "/bin/echo", "argv": "/bin/echo one", "ignore_errors": False},
        {"path": "/bin/sh", "argv": "/bin/sh -c echo two; exit 0", "ignore_errors": True}]
    assert sd.unit_file(props)["drop_in_paths"] == []


def test_unit_that_does_not_exist() -> None:
    state = sd.unit_state("nosuch.service", data("systemctl/show-full-not-found.txt"))
    assert not state["found"] and state["unit_file"]["exec_start"] == [] and state["environment"] == {}
    assert not sd.is_found({}) and sd.is_found({"LoadState": "masked"})


@pytest.mark.parametrize(("active", "sub", "starting"), [
    ("activating", "start", True), ("activating", "start-pre", True), ("activating", "start-post", True),
    ("activating", "auto-restart", False), ("active", "running", False), ("failed", "failed", False)])
def test_is_starting(active: str, sub: str, starting: bool) -> None:
    assert sd.is_starting({"ActiveState": active, "SubState": sub}) is starting


def test_unit_name_and_words() -> None:
    assert sd.unit_name("cosyvoice") == "cosyvoice.service" and sd.unit_name("x.scope") == "x.scope"
    assert sd.split_words('/a "/b c" /d') == ["/a", "/b c", "/d"]
    assert sd.split_words('"unbalanced /x') == ['"unbalanced', "/x"]
    assert sd.parse_environment("A=1 DB_PASSWORD=x", redact=False) == {"A": "1", "DB_PASSWORD": "x"}


# -- the health request -----------------------------------------------------------------------

class FakeResponse:
    def __init__(self, status: int, reason: str = "OK") -> None:
        self.status, self.reason = status, reason

    def __enter__(self) -> FakeResponse:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None


class FakeOpener:
    """Answers like urllib's opener: a response, or the exception urllib raises for the case."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer

    def open(self, url: str, timeout: float) -> Any:
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer


@pytest.mark.parametrize(("answer", "outcome", "status", "phase", "msg"), [
    (FakeResponse(200), "ok", 200, "", "OK"),
    (FakeResponse(204, "No Content"), "ok", 204, "", "No Content"),
    (urllib.error.HTTPError(URL, 503, "Service Unavailable", {}, None), "http_error", 503, "", "Service Unavailable"),
    # nothing listens / REJECT with tcp reset
    (urllib.error.URLError(ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")), "refused", -1, "",
     "<urlopen error [Errno 111] Connection refused>"),
    # a DROP rule: no answer to the SYN (connect timeout, wrapped by urllib)
    (urllib.error.URLError(TimeoutError("timed out")), "timeout", -1, "connect", "<urlopen error timed out>"),
    (urllib.error.URLError(socket.timeout("timed out")), "timeout", -1, "connect", "<urlopen error timed out>"),
    # the kernel's own connect timeout
    (urllib.error.URLError(OSError(errno.ETIMEDOUT, "Connection timed out")), "timeout", -1, "connect",
     "<urlopen error [Errno 110] Connection timed out>"),
    # accepted, then no response (a hung process): raised while reading, not wrapped
    (TimeoutError("timed out"), "timeout", -1, "read", "timed out"),
    # REJECT with icmp host-unreachable, or no route
    (urllib.error.URLError(OSError(errno.EHOSTUNREACH, "No route to host")), "unreachable", -1, "",
     "<urlopen error [Errno 113] No route to host>"),
    (urllib.error.URLError(socket.gaierror(-2, "Name or service not known")), "error", -1, "",
     "<urlopen error [Errno -2] Name or service not known>"),
    (ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"), "error", -1, "",
     "[Errno 104] Connection reset by peer"),
])
def test_probe_outcomes(answer: Any, outcome: str, status: int, phase: str, msg: str) -> None:
    r = hl.probe_url(URL, 2, FakeOpener(answer))
    assert (r["outcome"], r["status"], r["timeout_phase"], r["msg"]) == (outcome, status, phase, msg)
    assert r["ok"] is (status == 200) and r["url"] == URL and r["outcome"] in hl.OUTCOMES


@pytest.fixture()
def http_port() -> Iterator[int]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200 if self.path == "/healthz" else 404)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return None

    with serve(Handler) as port:
        yield port


def test_probe_for_real_on_loopback(http_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9/")  # must be ignored
    assert hl.probe_url(f"http://127.0.0.1:{http_port}/healthz", 2)["outcome"] == "ok"
    missing = hl.probe_url(f"http://127.0.0.1:{http_port}/nope", 2)
    assert (missing["outcome"], missing["status"]) == ("http_error", 404)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    assert hl.probe_url(f"http://127.0.0.1:{port}/", 2)["outcome"] == "refused"
    with socket.socket() as hung:  # listens, never answers: the kernel accepts, nothing reads
        hung.bind(("127.0.0.1", 0))
        hung.listen(1)
        r = hl.probe_url(f"http://127.0.0.1:{hung.getsockname()[1]}/", 0.3)
    assert (r["outcome"], r["timeout_phase"]) == ("timeout", "read")


def test_connect_timeout_bounds_a_dropped_connection_alone(http_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A packet filter that drops: the connection alone times out after connect_timeout, not the
    whole http_timeout, and urllib is not asked at all. Anything else goes on to the HTTP request."""
    assert hl.probe_url(f"http://127.0.0.1:{http_port}/healthz", 5, connect_timeout=1)["outcome"] == "ok"
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    assert hl.probe_url(f"http://127.0.0.1:{port}/", 5, connect_timeout=1)["outcome"] == "refused"
    asked: list[tuple[object, float]] = []

    def dropped(address: object, timeout: float) -> socket.socket:
        asked.append((address, timeout))
        raise TimeoutError("timed out")

    monkeypatch.setattr(hl.socket, "create_connection", dropped)
    r = hl.probe_url("https://10.0.0.5/healthz", 15, FakeOpener(AssertionError("urllib was asked")), connect_timeout=3)
    assert (r["outcome"], r["status"], r["timeout_phase"]) == ("timeout", -1, "connect")
    assert "no connection within 3 s" in r["msg"] and asked == [(("10.0.0.5", 443), 3)]
    # 0 (the module's default), or not below http_timeout: no separate connection first
    for connect_timeout in (0, 15):
        asked.clear()
        assert hl.probe_url(URL, 15, FakeOpener(FakeResponse(200)), connect_timeout=connect_timeout)["outcome"] == "ok"
        assert asked == []


@pytest.mark.parametrize(("msg", "kind"), [
    ("Request failed: <urlopen error timed out>", "timeout"), ("Timeout when waiting for h:7860", "timeout"),
    ("<urlopen error [Errno 111] Connection refused>", "refused"), ("[Errno 113] No route to host", "unreachable"),
    ("<urlopen error [Errno -2] Name or service not known>", "dns"),
    ("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed", "tls"), ("weird", "other"), (None, "other")])
def test_message_kind(msg: Any, kind: str) -> None:
    assert hl.message_kind(msg) == kind


# -- the module ------------------------------------------------------------------------------------

class FakeModule:
    """What host_probe uses of AnsibleModule: params, run_command, get_bin_path, warn."""

    def __init__(self, commands: dict[tuple[str, ...], Any], bins: tuple[str, ...] = ("systemctl", "ss", "journalctl"),
                 **params: Any) -> None:
        self.params = {"units": [], "health_url": "", "http_timeout": 2.0, "connect_timeout": 0.0, "startup_timeout": 0,
                       "journal_lines": 20, "ports": []}
        self.params.update(params)
        self.commands = commands
        self.bins = bins
        self.ran: list[list[str]] = []
        self.warnings: list[str] = []

    def get_bin_path(self, name: str) -> str | None:
        return f"/usr/bin/{name}" if name in self.bins else None

    def run_command(self, argv: list[str]) -> tuple[int, str, str]:
        self.ran.append(argv)
        key = (argv[0].rsplit("/", 1)[-1], argv[-1])
        answer = self.commands.get(key, (0, "", ""))
        return answer(argv) if callable(answer) else answer

    def warn(self, msg: str) -> None:
        self.warnings.append(msg)


@pytest.fixture()
def proc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A /proc with the cgroup file of demo.service's process (pid 138, the ss sample's)."""
    (tmp_path / "138").mkdir()
    (tmp_path / "138" / "cgroup").write_text(data("cgroup/proc-pid-cgroup-hybrid.txt"), encoding="utf-8")
    monkeypatch.setattr(hp, "PROC", str(tmp_path))
    return tmp_path


def test_probe_collects_everything(proc: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hp, "probe_url", lambda url, timeout, connect_timeout=0: hl.result(url, "ok", 200, "OK"))
    module = FakeModule({
        ("systemctl", "demo.service"): (0, data("systemctl/show-full-active.txt"), ""),
        ("systemctl", "nginx.service"): (0, data("systemctl/show-full-not-found.txt"), ""),
        ("ss", "-p"): (0, data("ss/probe-demo-iproute2-6.1.txt"), ""),
    }, units=["demo.service", "nginx.service"], health_url=URL, ports=[7860, 443])
    out = hp.probe(module)
    assert out["changed"] is False and out["ss_error"] == "" and out["journal"] == []
    assert list(out["units"]) == ["demo.service", "nginx.service"]
    assert out["units"]["demo.service"]["unit_file"]["drop_in_paths"][1].endswith("override.conf")
    assert not out["units"]["nginx.service"]["found"]
    assert out["health"]["outcome"] == "ok" and out["health"]["attempts"] == 1
    assert [x["local"] for x in out["listeners"]] == ["0.0.0.0:7860"]
    assert out["pid_units"] == {"138": "demo.service"}
    assert out["port_holders"] == [
        {"port": 7860, "listening": True, "addresses": ["0.0.0.0:7860"],
         "holders": [{"name": "python3", "pid": 138, "unit": "demo.service"}]},
        {"port": 443, "listening": False, "addresses": [], "holders": []}]
    show = next(argv for argv in module.ran if argv[-1] == "demo.service")
    assert show[:2] == ["/usr/bin/systemctl", "show"] and "ExecStart" in show[2] and "DropInPaths" in show[2]
    assert ["/usr/bin/ss", "-H", "-t", "-l", "-n", "-p"] in module.ran


def test_journal_only_when_the_app_is_not_active(proc: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hp, "probe_url", lambda url, timeout, connect_timeout=0: hl.result(url, "refused", -1, "refused"))
    module = FakeModule({
        ("systemctl", "demo.service"): (0, data("systemctl/show-full-stopped.txt"), ""),
        ("journalctl", "cat"): (0, "Stopping demo...\n\nERROR boom\n", ""),
    }, units=["demo.service"], health_url=URL, journal_lines=5)
    out = hp.probe(module)
    assert out["journal"] == ["Stopping demo...", "ERROR boom"]
    assert ["/usr/bin/journalctl", "--unit", "demo.service", "--lines", "5", "--no-pager", "--output", "cat"] in module.ran
    assert out["health"]["outcome"] == "refused" and out["health"]["attempts"] == 1


def test_health_is_asked_again_only_while_the_unit_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter(["refused", "refused", "ok"])
    monkeypatch.setattr(hp, "probe_url", lambda url, timeout, connect_timeout=0: hl.result(url, (o := next(answers)), 200 if o == "ok" else -1))
    sleeps: list[float] = []
    monkeypatch.setattr(hp.time, "sleep", sleeps.append)
    starting = (0, "ActiveState=activating\nSubState=start\n", "")
    module = FakeModule({("systemctl", "demo.service"): starting}, units=["demo.service"], health_url=URL,
                        startup_timeout=60)
    r = hp.wait_health(module, "/usr/bin/systemctl", "demo.service")
    assert (r["outcome"], r["attempts"]) == ("ok", 3) and sleeps == [hp.STARTUP_POLL_S] * 2
    crash_loop = (0, "ActiveState=activating\nSubState=auto-restart\n", "")
    answers = iter(["refused", "ok"])
    module = FakeModule({("systemctl", "demo.service"): crash_loop}, units=["demo.service"], health_url=URL,
                        startup_timeout=60)
    assert hp.wait_health(module, "/usr/bin/systemctl", "demo.service")["attempts"] == 1
    answers = iter(["refused", "ok"])
    module = FakeModule({("systemctl", "demo.service"): starting}, units=["demo.service"], health_url=URL,
                        startup_timeout=0)
    assert hp.wait_health(module, "/usr/bin/systemctl", "demo.service")["attempts"] == 1  # no time to wait
    assert hp.wait_health(FakeModule({}), None, None) == {}  # no URL: not asked


def test_without_ss_or_systemctl(proc: Path) -> None:
    module = FakeModule({}, bins=(), units=["demo.service"])
    out = hp.probe(module)
    assert out["ss_error"].startswith("ss not found") and out["listeners"] == []
    assert out["units"]["demo.service"]["error"] == "systemctl not found: not a systemd host"
    assert out["units"]["demo.service"]["properties"] == {} and out["journal"] == []


def test_ss_failure_and_odd_lines(proc: Path) -> None:
    failing = FakeModule({("ss", "-p"): (1, "", "Cannot open netlink socket: Permission denied")})
    assert hp.probe(failing)["ss_error"] == "ss exited 1: Cannot open netlink socket: Permission denied"
    odd = FakeModule({("ss", "-p"): (0, data("ss/probe-demo-iproute2-6.1.txt") + "garbage\n", "")})
    out = hp.probe(odd)
    assert out["ss_error"] == "" and len(out["listeners"]) == 1
    assert len(odd.warnings) == 1 and "garbage" in odd.warnings[0]


def test_cgroup_of_a_process_that_is_gone(proc: Path) -> None:
    assert hp.read_pid_units([138, 99999]) == {"138": "demo.service"}


def test_module_entry_point_in_check_mode(proc: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """AnsibleModule's argument spec, check mode accepted, and the JSON it prints."""
    calls: list[list[str]] = []

    def run_command(self: Any, argv: list[str], **kwargs: Any) -> tuple[int, str, str]:
        calls.append(argv)
        if argv[-1] == "-p":
            return 0, data("ss/probe-demo-iproute2-6.1.txt"), ""
        return 0, data("systemctl/show-full-active.txt"), ""

    monkeypatch.setattr(basic.AnsibleModule, "run_command", run_command)
    monkeypatch.setattr(basic.AnsibleModule, "get_bin_path", lambda self, name, *a, **k: f"/usr/bin/{name}")
    probes: list[tuple[float, float]] = []

    def probe(url: str, timeout: float, connect_timeout: float = 0) -> dict[str, Any]:
        probes.append((timeout, connect_timeout))
        return hl.result(url, "ok", 200, "OK")

    monkeypatch.setattr(hp, "probe_url", probe)
    args = {"units": ["demo.service"], "health_url": URL, "ports": ["7860"], "connect_timeout": "3",
            "_ansible_check_mode": True}
    with patch_module_args(args), pytest.raises(SystemExit) as exit_:
        hp.main()
    assert exit_.value.code == 0
    assert probes == [(15.0, 3.0)]  # http_timeout's default, the connect timeout as given
    out = json.loads(capsys.readouterr().out)
    assert out["changed"] is False and out["port_holders"][0]["port"] == 7860
    assert out["units"]["demo.service"]["environment"]["HF_TOKEN"] == "********"
    assert out["health"]["outcome"] == "ok" and ["/usr/bin/ss", "-H", "-t", "-l", "-n", "-p"] in calls


def test_documentation_matches_the_argument_spec() -> None:
    import yaml
    doc = yaml.safe_load(hp.DOCUMENTATION)
    assert set(doc["options"]) == set(hp.ARGUMENT_SPEC)
    for name, spec in hp.ARGUMENT_SPEC.items():
        assert doc["options"][name]["type"] == spec["type"], name
        assert doc["options"][name].get("default") == spec.get("default"), name
    returned = yaml.safe_load(hp.RETURN)
    assert set(returned) == {"units", "health", "listeners", "ss_error", "pid_units", "port_holders", "journal",
                             "firewall", "certificate"}
    firewall = doc["options"]["firewall"]["suboptions"]
    assert set(firewall) == set(hp.ARGUMENT_SPEC["firewall"]["options"])
    for name, spec in hp.ARGUMENT_SPEC["firewall"]["options"].items():
        assert firewall[name]["type"] == spec["type"] and firewall[name].get("default") == spec.get("default"), name
    yaml.safe_load(hp.EXAMPLES)


# --------------------------------------------------------------------------- the packet filter (firewall option)

FIREWALL_DATA = _DATA / "os_firewall"
FirewallHost = fh.Host


def run_module(module: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], root: Path,
               args: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """main() of `module` on a host where ufw is the only firewall (tests/unit/data/os_firewall samples)."""
    def run_command(self: Any, argv: list[str], **kwargs: Any) -> tuple[int, str, str]:
        name = Path(argv[0]).name
        if name == "systemctl" and argv[1] == "is-active":
            return 3, "inactive\n", ""
        if name == "ufw":
            return 0, (FIREWALL_DATA / "ufw_status_verbose.txt").read_text(), ""
        if name == "ss":
            return 0, data("ss/probe-demo-iproute2-6.1.txt"), ""
        return 0, data("systemctl/show-full-active.txt"), ""

    class RootHost(FirewallHost):
        def __init__(self, mod: Any) -> None:
            super().__init__(mod, str(root))

        def is_root(self) -> bool:
            return True

    tools = {"systemctl", "ss", "ufw"}
    (root / "etc" / "ufw").mkdir(parents=True, exist_ok=True)
    (root / "etc" / "ufw" / "user.rules").write_text((FIREWALL_DATA / "ufw_user_rules.txt").read_text())
    monkeypatch.setattr(basic.AnsibleModule, "run_command", run_command)
    monkeypatch.setattr(basic.AnsibleModule, "get_bin_path",
                        lambda self, name, *a, **k: f"/usr/bin/{name}" if name in tools else None)
    monkeypatch.setattr(fh, "Host", RootHost)
    monkeypatch.setattr(module, "Host", RootHost, raising=False)
    monkeypatch.setattr(hp, "probe_url", lambda url, timeout, connect_timeout=0: hl.result(url, "ok", 200, "OK"))
    monkeypatch.delenv("SSH_CONNECTION", raising=False)
    with patch_module_args(args), pytest.raises(SystemExit) as exit_:
        module.main()
    return int(exit_.value.code or 0), json.loads(capsys.readouterr().out)


def test_firewall_option_reads_the_packet_filter_as_os_firewall_facts_does(
        proc: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """One module run for the verify role: the same readers, the same answer as the fact module's."""
    from ansible_collections.cosyvoice.deploy.plugins.modules import os_firewall_facts
    ports = [{"port": 22, "proto": "tcp"}, {"port": 7860}, {"port": 9999}]
    rc, out = run_module(hp, monkeypatch, capsys, tmp_path,
                         {"units": ["demo.service"], "health_url": URL, "ports": [7860],
                          "firewall": {"ports": ports, "ssh_ports": [22]}})
    assert rc == 0 and out["health"]["outcome"] == "ok"
    firewall = out["firewall"]
    assert firewall["backend"] == "ufw" and firewall["active"] is True
    assert [(p["port"], p["scope"]) for p in firewall["ports"]] == [(22, "any"), (7860, "some"), (9999, "none")]
    rc, facts = run_module(os_firewall_facts, monkeypatch, capsys, tmp_path, {"ports": ports, "ssh_ports": [22]})
    assert rc == 0 and facts["ansible_facts"]["os_firewall"] == firewall


def test_firewall_option_is_read_only_when_asked_and_checks_its_ports(
        proc: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out = run_module(hp, monkeypatch, capsys, tmp_path, {"units": ["demo.service"], "health_url": URL})
    assert rc == 0 and "firewall" not in out
    rc, out = run_module(hp, monkeypatch, capsys, tmp_path,
                         {"units": ["demo.service"], "firewall": {"ports": [{"port": 70000}]}})
    assert rc == 1 and out["msg"] == "firewall.ports: [70000] are not port numbers (1-65535)."



PEM = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n"


def test_the_certificate_to_trust_comes_with_the_probe_and_never_a_key(tmp_path) -> None:
    cert = tmp_path / "site.crt"
    cert.write_text(PEM + PEM)  # a chain: certificates only
    assert hp.read_certificate(str(cert)) == {"path": str(cert), "content": PEM + PEM, "error": ""}
    assert hp.read_certificate(str(tmp_path / "none"))["error"] == "no such file"
    for text in (PEM + "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n",
                 "-----BEGIN EC PRIVATE KEY-----\nMHcC\n-----END EC PRIVATE KEY-----\n", "not pem at all\n"):
        cert.write_text(text)
        got = hp.read_certificate(str(cert))
        assert got["content"] is None and "not only PEM certificates" in got["error"]
    cert.write_bytes(b"-----BEGIN CERTIFICATE-----\n" + b"A" * (1 << 20))
    assert "larger than 1 MiB" in hp.read_certificate(str(cert))["error"]
