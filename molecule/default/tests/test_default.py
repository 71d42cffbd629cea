"""The default scenario: site.yml on a Debian host, `direct` exposure with login, espeak engine.

Everything that says "from the controller" runs here, on the controller, against the
container's bridge address — the path a user's browser takes.
"""

from __future__ import annotations

import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tests.lib.browser import load_page  # noqa: E402
from tests.lib.gradio_api import Client, synthesize, wav_stats  # noqa: E402
from tests.lib.targets import container_ip, figure, systemd_exposure, tcp_open  # noqa: E402

PORT = 7860
LOGIN = ("alice", "molecule-test-password")
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(scope="module")
def base_url(host) -> str:
    return f"http://{container_ip(host)}:{PORT}/"


def test_unit_active_enabled_and_unprivileged(host):
    svc = host.service("cosyvoice")
    assert svc.is_running
    assert svc.is_enabled
    pid = host.check_output("systemctl show -p MainPID --value cosyvoice")
    assert host.check_output(f"ps -o user= -p {pid}").strip() == "cosyvoice"


def test_listens_on_all_interfaces(host):
    listeners = host.check_output("ss -H -tlnp 'sport = :%d'" % PORT)
    assert "0.0.0.0:7860" in listeners, listeners
    assert "python" in listeners, "the port is held by the launcher, not another process"


def test_health_and_ui_answer_from_the_controller(base_url):
    with NO_PROXY.open(base_url + "healthz", timeout=10) as resp:
        assert resp.status == 200
        assert b'"engine":"espeak"' in resp.read()
    with NO_PROXY.open(base_url, timeout=10) as resp:  # the login page
        assert resp.status == 200
        assert b"gradio" in resp.read().lower()


def test_unauthenticated_api_call_is_refused(base_url):
    with pytest.raises(urllib.error.HTTPError) as err:
        Client(base_url).call("synthesize", "no login", "sft", "", "", None, "", 0, 1.0)
    assert err.value.code == 401


def test_wrong_password_is_refused(base_url):
    with pytest.raises(urllib.error.HTTPError) as err:
        Client(base_url, login=("alice", "wrong-password"))
    assert err.value.code in (400, 401)


def test_authenticated_synthesis_returns_real_audio(base_url):
    wav = synthesize(base_url, "The service is reachable from the controller.", login=LOGIN)
    rate, seconds, peak = wav_stats(wav)
    assert rate == 22050
    assert seconds > 1.0
    assert peak > 1000, "audio is silent"


def test_secrets_file_is_private(host):
    f = host.file("/etc/cosyvoice/auth.json")
    assert f.user == "cosyvoice"
    assert f.mode == 0o600
    assert "molecule-test-password" not in host.check_output("systemctl cat cosyvoice")
    assert "molecule-test-password" not in host.check_output("ps -eo args")


def test_unit_is_hardened(host):
    exposure = systemd_exposure(host, "cosyvoice")
    figure(f"default: systemd-analyze security cosyvoice: {exposure}")
    assert exposure <= 2.5


def test_log_and_memory_bounds_are_in_effect(host):
    """What systemd applies, not only what the file says: journald rate limit, session capacity."""
    props = host.check_output("systemctl show -p LogRateLimitIntervalUSec -p LogRateLimitBurst -p ExecStart cosyvoice")
    assert "LogRateLimitIntervalUSec=30s" in props and "LogRateLimitBurst=1000" in props, props
    assert "--session-capacity 1000" in props, props


def test_code_is_not_writable_by_the_service(host):
    for path in ("/opt/cosyvoice/src", "/opt/cosyvoice/venv", "/opt/cosyvoice/launcher"):
        assert host.file(path).user == "root"
    assert host.run("runuser -u cosyvoice -- touch /opt/cosyvoice/launcher/x").rc != 0


def test_only_the_app_port_is_open(host):
    ip = container_ip(host)
    assert tcp_open(ip, PORT)
    assert not tcp_open(ip, 7861, timeout=1)


def _main_pid(host) -> int:
    return int(host.check_output("systemctl show -p MainPID --value cosyvoice"))


def _wait_until_serving(url: str, old_pid: int, host, limit: float) -> float:
    """Seconds until the health endpoint answers from the controller, served by a new process."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        try:
            with NO_PROXY.open(url, timeout=1) as resp:
                if resp.status == 200 and _main_pid(host) not in (0, old_pid):
                    return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.25)
    raise AssertionError(f"not serving again within {limit} s")


def _start_seconds(host) -> float:
    """How long the unit's current start took (exec of the main process -> READY): the part
    of a recovery that is the app loading, which grows with the machine's load."""
    out = host.check_output("systemctl show cosyvoice.service -p ExecMainStartTimestampMonotonic "
                            "-p ActiveEnterTimestampMonotonic")
    props = dict(line.split("=", 1) for line in out.splitlines())
    return (int(props["ActiveEnterTimestampMonotonic"]) - int(props["ExecMainStartTimestampMonotonic"])) / 1e6


def test_kill_9_is_recovered_within_restart_sec_and_a_start(host, base_url):
    """RestartSec (5 s) + the new process's own start + 5 s for the probes from the
    controller: 15 s on an idle machine; the start is measured, so a busy CI machine
    does not fail this while a slower restart path would."""
    pid = _main_pid(host)
    host.check_output(f"kill -9 {pid}")
    took = _wait_until_serving(base_url + "healthz", pid, host, limit=60)
    start = _start_seconds(host)
    figure(f"default: kill -9 -> serving again from the controller after {took:.1f} s (its start: {start:.1f} s)")
    assert took <= 5 + start + 5


def test_hung_process_is_restarted_by_the_watchdog(host, base_url):
    # watchdog: probe every 5 s, 2 s timeout, restart after 2 failures (molecule.yml)
    pid = _main_pid(host)
    since = host.check_output("date '+%Y-%m-%d %H:%M:%S'")
    host.check_output(f"kill -STOP {pid}")
    try:
        took = _wait_until_serving(base_url + "healthz", pid, host, limit=60)
    finally:
        host.run(f"kill -CONT {pid}")
    start = _start_seconds(host)
    figure(f"default: SIGSTOP -> watchdog restart -> serving again after {took:.1f} s (its start: {start:.1f} s)")
    log = host.check_output(f"journalctl -t cosyvoice-watchdog --since '{since}' --no-pager")
    assert "restarting cosyvoice.service: health check failed 2 times in a row" in log
    # Two probes 5 s apart that wait 2 s each, the start itself, 10 s for the timer and the controller.
    assert took <= 5 * 2 + 2 * 2 + start + 10


def test_the_page_loads_nothing_from_other_hosts(base_url, host):
    """Headless Chromium: every request the page makes goes to the service (no fonts/CDN), no '//' URLs."""
    seen = load_page(base_url)
    own = base_url.split("/")[2]
    assert seen.page_hosts == {own}, seen.page_hosts
    assert seen.connections == {own}, seen.connections
    assert seen.paths and not [p for p in seen.paths if p.startswith("//")], seen.paths
    assert "gradio-app" in seen.dom


def test_audio_cache_is_bounded(base_url, host):
    """cosyvoice_cache_max_files=5, grace 2 s (molecule.yml): after 12 syntheses at most 5 old files remain,
    plus the one the last request is still writing."""
    cache = "/var/lib/cosyvoice/cache/gradio"
    for i in range(12):
        synthesize(base_url, f"cache bound test number {i}", login=LOGIN)
    time.sleep(3)
    synthesize(base_url, "one more, to prune", login=LOGIN)
    files = [x for x in host.check_output(f"find {cache} -type f").splitlines() if x]
    figure(f"default: audio cache after 13 syntheses: {len(files)} files (max 5 + 1 in flight)")
    assert 1 <= len(files) <= 6, files
