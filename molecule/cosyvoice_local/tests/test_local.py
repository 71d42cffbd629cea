"""`local` exposure: loopback only, unreachable from the controller, served under /tts."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tests.lib.targets import container_ip, tcp_open  # noqa: E402

PORT = 7870


def test_bound_to_loopback_only(host):
    listeners = host.check_output("ss -H -tlnp 'sport = :%d'" % PORT)
    assert "127.0.0.1:7870" in listeners, listeners
    assert "0.0.0.0:7870" not in listeners and "*:7870" not in listeners


def test_not_reachable_from_the_controller(host):
    assert not tcp_open(container_ip(host), PORT, timeout=2)


def test_served_on_the_host_under_the_root_path(host):
    health = json.loads(host.check_output(f"curl -sf --noproxy '*' http://127.0.0.1:{PORT}/tts/healthz"))
    assert health == {"status": "ok", "engine": "espeak", "sample_rate": 22050, "root_path": "/tts"}
    page = host.check_output(f"curl -sf --noproxy '*' http://127.0.0.1:{PORT}/tts/")
    assert "gradio" in page.lower()


def test_no_login_file_without_users(host):
    assert not host.file("/etc/cosyvoice/auth.json").exists
    assert "--auth-file" not in host.check_output("systemctl cat cosyvoice")


def test_unit_names_the_exposure(host):
    unit = host.check_output("systemctl cat cosyvoice")
    assert "--host 127.0.0.1" in unit and "--port 7870" in unit and "--root-path /tts" in unit
