"""Unit tests for the client_probe module (plugins/modules/client_probe.py): the verify role's checks from
the controller, run for real against servers on 127.0.0.1 (a Gradio-like login, nginx-like basic auth,
a refused port, a port that stays open)."""

from __future__ import annotations

import base64
import http.server
import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from ansible.module_utils.testing import patch_module_args

from ansible_collections.cosyvoice.deploy.plugins.modules import client_probe as cp
from tests.lib.local_http import serve

USER, PASSWORD = "alice", "s3cret pass&word"
COOKIE = "access-token=abc123"


class _Handler(http.server.BaseHTTPRequestHandler):
    """/config: 401 without the login cookie (Gradio); /login: form login; /basic: HTTP basic auth;
    /moved: a redirect to /config."""

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, body: bytes = b"{}", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/config":
            self._send(200 if COOKIE in (self.headers.get("Cookie") or "") else 401)
        elif self.path == "/basic":
            good = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
            self._send(200 if self.headers.get("Authorization") == good else 401)
        elif self.path == "/moved":
            self._send(302, b"", {"Location": "/config"})
        else:
            self._send(404)

    def do_POST(self) -> None:  # noqa: N802
        form = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        from urllib.parse import parse_qs
        fields = {k: v[0] for k, v in parse_qs(form).items()}
        if fields == {"username": USER, "password": PASSWORD}:
            self._send(200, b'{"success": true}', {"Set-Cookie": f"{COOKIE}; Path=/"})
        else:
            self._send(400, b'{"detail": "Incorrect credentials."}')


@pytest.fixture(name="server")
def fixture_server() -> Iterator[int]:
    with serve(_Handler) as port:
        yield port


def free_port() -> int:
    """A port nothing listens on (refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(args: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    with patch_module_args({"address": "127.0.0.1", **args}), pytest.raises(SystemExit) as exit_:
        cp.main()
    assert exit_.value.code == 0
    return json.loads(capsys.readouterr().out)


def test_gradio_login_as_users_do(server: int, capsys: pytest.CaptureFixture[str]) -> None:
    base = f"http://127.0.0.1:{server}/"
    out = run({"tcp_ports": [server], "url": base + "config", "login": "gradio", "login_url": base + "login",
               "authed_url": base + "config", "username": USER, "password": PASSWORD}, capsys)
    assert out["changed"] is False
    assert out["tcp"][0]["port"] == server and out["tcp"][0]["ok"] is True
    # As ansible.builtin.uri words it: the 401 without the cookie, then OK with it.
    assert out["http"]["status"] == 401 and out["http"]["msg"] == "HTTP Error 401: Unauthorized"
    assert out["http"]["url"] == base + "config"
    assert out["login"]["status"] == 200 and out["authed"]["status"] == 200
    # Neither the password nor the session cookie comes back.
    assert PASSWORD not in json.dumps(out) and "abc123" not in json.dumps(out)


def test_wrong_password_is_a_refused_login(server: int, capsys: pytest.CaptureFixture[str]) -> None:
    base = f"http://127.0.0.1:{server}/"
    out = run({"tcp_ports": [server], "url": base + "config", "login": "gradio", "login_url": base + "login",
               "authed_url": base + "config", "username": USER, "password": "wrong"}, capsys)
    assert out["login"]["status"] == 400 and out["authed"]["status"] == 401


def test_basic_auth_and_redirects(server: int, capsys: pytest.CaptureFixture[str]) -> None:
    base = f"http://127.0.0.1:{server}/"
    out = run({"url": base + "moved", "login": "basic", "authed_url": base + "basic",
               "username": USER, "password": PASSWORD}, capsys)
    assert out["http"]["status"] == 401  # the GET redirect followed to /config (302 is not an answer)
    assert out["authed"]["status"] == 200 and out["login"] == {}


def test_no_answer_skips_the_login_and_names_the_error(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}/"
    out = run({"tcp_ports": [port], "connect_timeout": 0.6, "url": base + "config", "login": "gradio",
               "login_url": base + "login", "authed_url": base + "config", "username": USER,
               "password": PASSWORD}, capsys)
    tcp = out["tcp"][0]
    assert tcp["ok"] is False and "Connection refused" in tcp["msg"] and tcp["elapsed"] >= 0.5  # retried
    assert out["http"]["status"] == -1 and "Connection refused" in out["http"]["msg"]
    assert out["http"]["msg"].startswith("Request failed: <urlopen error")
    assert out["login"] == {} and out["authed"] == {}


def test_exposure_and_closed_ports(server: int, capsys: pytest.CaptureFixture[str]) -> None:
    closed = free_port()
    out = run({"exposure_ports": [server, closed], "closed_port": closed}, capsys)
    assert out["exposed"] == {str(server): "open", str(closed): "refused"}
    assert out["closed"] == {"port": closed, "reachable": False, "msg": ""}
    assert out["tcp"] == [] and out["http"] == {}


def test_a_backend_port_that_answers_is_reported(server: int, capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cp, "CLOSED_WAIT_S", 0.3)
    out = run({"closed_port": server}, capsys)
    assert out["closed"]["reachable"] is True and f"127.0.0.1:{server}" in out["closed"]["msg"]


def test_a_url_fetch_url_rejects_is_one_failed_request(capsys: pytest.CaptureFixture[str]) -> None:
    """fetch_url ends a module with fail_json on some inputs; here that is the request's result only."""
    out = run({"url": "http://[::1/", "exposure_ports": [free_port()]}, capsys)
    assert out["http"]["status"] == -1 and out["http"]["msg"]
    assert list(out["exposed"].values()) == ["refused"]


def test_documentation_matches_the_argument_spec() -> None:
    doc = yaml.safe_load(cp.DOCUMENTATION)
    assert set(doc["options"]) == set(cp.ARGUMENT_SPEC)
    for name, spec in cp.ARGUMENT_SPEC.items():
        assert doc["options"][name]["type"] == spec["type"], name
        assert doc["options"][name].get("default") == spec.get("default"), name
    assert set(yaml.safe_load(cp.RETURN)) == {"tcp", "http", "login", "authed", "exposed", "closed",
                                                 "silence_wait"}
    yaml.safe_load(cp.EXAMPLES)


def test_dropped_must_be_closed_ports_cost_no_extra_time(server: int, capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The exposure and closed-port checks run alongside the requests: a port that a firewall drops
    (each connect waits out its timeout) does not add its wait to theirs."""
    import time as _time

    real = cp.connect_once

    def slow_drop(address: str, port: int, timeout: float) -> tuple[str, str]:
        if port == 1:
            _time.sleep(0.8)  # a DROP: no answer until the timeout
            return "timeout", "timed out"
        return real(address, port, timeout)

    monkeypatch.setattr(cp, "connect_once", slow_drop)
    monkeypatch.setattr(cp, "request", lambda *a, **k: (_time.sleep(0.8), ({"status": 200, "msg": "OK"}, ""))[1])
    started = _time.monotonic()
    out = run({"url": f"http://127.0.0.1:{server}/", "exposure_ports": [1], "closed_port": 1}, capsys)
    assert _time.monotonic() - started < 1.5  # 0.8 s of requests and 0.8 s of drops, side by side
    assert out["exposed"] == {"1": "timeout"} and out["closed"]["reachable"] is False
    assert out["http"]["status"] == 200


def test_the_wait_for_silence_scales_with_the_round_trip() -> None:
    """A port that must not answer gets 10 round trips of a public port (0.25 s .. 1 s); 1 s without one."""
    assert cp.silence_wait([]) == cp.EXPOSURE_TIMEOUT_S
    assert cp.silence_wait([{"ok": False, "rtt": None}]) == cp.EXPOSURE_TIMEOUT_S
    assert cp.silence_wait([{"ok": True, "rtt": 0.0002}]) == cp.SILENCE_MIN_S  # loopback, a LAN
    assert cp.silence_wait([{"ok": True, "rtt": 0.05}]) == 0.5
    assert cp.silence_wait([{"ok": True, "rtt": 0.3}, {"ok": True, "rtt": 0.01}]) == cp.EXPOSURE_TIMEOUT_S


def test_a_reached_public_port_shortens_the_wait_for_dropped_ports(server: int, capsys: pytest.CaptureFixture[str],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    waits = []
    real = cp.connect_once

    def drop(address: str, port: int, timeout: float) -> tuple[str, str]:
        if port == 1:
            waits.append(timeout)
            return "timeout", "timed out"
        return real(address, port, timeout)

    monkeypatch.setattr(cp, "connect_once", drop)
    out = run({"tcp_ports": [server], "exposure_ports": [1], "closed_port": 1}, capsys)
    assert out["tcp"][0]["ok"] and out["tcp"][0]["rtt"] < 0.025
    assert out["silence_wait"] == cp.SILENCE_MIN_S and waits == [cp.SILENCE_MIN_S] * 2
    assert out["exposed"] == {"1": "timeout"} and out["closed"]["reachable"] is False
