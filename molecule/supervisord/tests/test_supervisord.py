"""molecule/supervisord: a container platform without systemd (PID 1 is `sleep infinity`).

site.yml (cosyvoice_platform: autodl) converged it with supervisord; these tests
check the service from the controller on the published port 6006, kill -9 it,
break it the two ways the issue names (program stopped, bound to 127.0.0.1 in the
program file by hand), assert that playbooks/diagnose.yml names the layer with a
supervisorctl fix, and that a re-run of site.yml repairs it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tests.lib.targets import PROJECT, ansible_playbook, container_ip, recap  # noqa: E402

PORT = 6006
CONF = "/etc/supervisor/conf.d/cosyvoice.conf"
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(scope="module")
def name(host) -> str:  # type: ignore[no-untyped-def]
    return str(host.backend.get_hostname())


@pytest.fixture(scope="module")
def ip(host) -> str:  # type: ignore[no-untyped-def]
    return container_ip(host)


def health(ip: str) -> int:
    try:
        with NO_PROXY.open(f"http://{ip}:{PORT}/healthz", timeout=5) as resp:
            return int(resp.status)
    except OSError:
        return -1


def wait_healthy(ip: str, timeout: float = 120) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if health(ip) == 200:
            return time.monotonic() - start
        time.sleep(0.5)
    raise AssertionError(f"http://{ip}:{PORT}/healthz did not answer 200 within {timeout}s")


def evidence(host) -> str:  # type: ignore[no-untyped-def]
    """What supervisord and the watchdog did, for a failure message."""
    return host.run(
        "supervisorctl status; ps -eo pid,ppid,stat,etimes,user,args | grep -v ' ps '; "
        "tail -n 15 /var/log/supervisor/supervisord.log; "
        "tail -n 15 /var/log/cosyvoice/cosyvoice-watchdog.log; tail -n 15 /var/log/cosyvoice/cosyvoice.log"
    ).stdout


def app_pid(host) -> int:  # type: ignore[no-untyped-def]
    words = host.run("supervisorctl status cosyvoice").stdout.split()
    return int(words[3].rstrip(",")) if len(words) > 3 and words[1] == "RUNNING" else 0


def diagnose(tmp: Path, name: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    proc = ansible_playbook("playbooks/diagnose.yml", "-e", f"verify_report_dir={tmp}")
    return proc, json.loads((tmp / name / "report.json").read_text())


def converge(name: str) -> dict[str, int]:
    proc = ansible_playbook("molecule/supervisord/converge.yml")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    return recap(proc.stdout)[name]


def test_no_systemd_here_and_supervisord_runs_the_app(host) -> None:  # type: ignore[no-untyped-def]
    assert host.file("/proc/1/comm").content_string.strip() == "sleep"
    status = host.run("supervisorctl status").stdout
    assert "cosyvoice " in status and "RUNNING" in status.splitlines()[0]
    assert "cosyvoice-watchdog" in status
    pid = app_pid(host)
    proc = host.process.get(pid=pid)
    assert proc.user == "cosyvoice"
    # setpriv --no-new-privs: the one part of the systemd sandbox supervisord can keep.
    assert "NoNewPrivs:\t1" in host.file(f"/proc/{pid}/status").content_string
    # supervisord has no Type=notify: the launcher writes its pid here once loaded (the watchdog reads it).
    assert host.file("/var/lib/cosyvoice/cosyvoice.ready").content_string.strip() == str(pid)
    assert host.socket(f"tcp://0.0.0.0:{PORT}").is_listening


def test_the_published_port_answers_from_the_controller_and_the_report_says_why_layers_are_skipped(
        ip: str, name: str) -> None:
    assert health(ip) == 200
    report = json.loads((PROJECT / "reports" / name / "report.json").read_text())
    assert report["ok"], report["message"]
    assert report["url"] == f"http://{ip}:{PORT}/"
    checks = {c["id"]: c for c in report["checks"]}
    assert checks["os_firewall"]["status"] == "skip" and "autodl" in checks["os_firewall"]["summary"]
    assert checks["security_group"]["status"] == "skip" and "autodl" in checks["security_group"]["summary"]
    assert "6006" in report["platform"]["note"]


def test_kill_9_and_the_app_is_serving_again(host, ip: str) -> None:  # type: ignore[no-untyped-def]
    before = app_pid(host)
    assert before
    host.run(f"kill -9 {before}")
    took = wait_healthy(ip)
    deadline = time.monotonic() + 30  # supervisord says RUNNING once it has lived startsecs
    while not app_pid(host) and time.monotonic() < deadline:
        time.sleep(0.5)
    after = app_pid(host)
    assert after and after != before, f"pid {before} -> {after}\n{evidence(host)}"
    print(f"\nFIGURE supervisord restart after kill -9: serving again in {took:.1f} s")


def test_a_stopped_program_is_named_and_a_rerun_starts_it(host, ip: str, name: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    host.run("supervisorctl stop cosyvoice-watchdog cosyvoice")
    assert health(ip) == -1
    proc, report = diagnose(tmp_path, name)
    assert proc.returncode != 0
    assert report["layer"] == "service", report["message"]
    assert "supervisorctl start cosyvoice" in report["fix"], report["fix"]
    assert "systemctl" not in report["fix"]
    counts = converge(name)
    assert counts["changed"] >= 1 and counts["failed"] == 0
    assert health(ip) == 200
    assert "RUNNING" in host.run("supervisorctl status cosyvoice-watchdog").stdout


def test_bound_to_loopback_by_hand_is_named_and_repaired(host, ip: str, name: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    host.run(f"sed -i 's/--host 0.0.0.0/--host 127.0.0.1/' {CONF} && supervisorctl update cosyvoice")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not host.socket(f"tcp://127.0.0.1:{PORT}").is_listening:
        time.sleep(0.5)
    assert not host.socket(f"tcp://0.0.0.0:{PORT}").is_listening
    proc, report = diagnose(tmp_path, name)
    assert proc.returncode != 0
    assert report["layer"] == "bind", report["message"]
    assert "0.0.0.0" in report["fix"] or "0.0.0.0" in report["cause"]
    counts = converge(name)
    assert counts["changed"] >= 1
    assert "--host 0.0.0.0" in host.file(CONF).content_string
    wait_healthy(ip)
    assert host.socket(f"tcp://0.0.0.0:{PORT}").is_listening


def test_a_slow_start_is_left_to_load(host, ip: str) -> None:  # type: ignore[no-untyped-def]
    """supervisord says RUNNING after startsecs (5 s), loaded or not. A process frozen before
    it ever answered (a model that takes minutes to load) must not be killed by the watchdog
    (probe every 5 s, 2 failures) within cosyvoice_timeout_start_sec; it serves once it goes on."""
    before = app_pid(host)
    log = "/var/log/cosyvoice/cosyvoice-watchdog.log"
    restarts = host.run(f"grep -c restarting {log}").stdout.strip()
    # Freeze the new process as soon as it exists, long before the app can answer.
    froze = host.run(
        f"supervisorctl restart cosyvoice >/dev/null & "
        f"for i in $(seq 1 2000); do new=$(pgrep -n -u cosyvoice -f -- '-m cosyvoice_launcher '); "
        f"if [ -n \"$new\" ] && [ \"$new\" != {before} ]; then kill -STOP $new; echo $new; break; fi; "
        f"sleep 0.01; done; wait")
    new = int(froze.stdout.split()[-1])
    time.sleep(20)  # 4 probes: without the start grace the watchdog restarts it after 2
    assert app_pid(host) == new, evidence(host)
    assert host.run(f"grep -c restarting {log}").stdout.strip() == restarts, evidence(host)
    host.run(f"kill -CONT {new}")
    wait_healthy(ip, timeout=60)
    assert app_pid(host) == new, evidence(host)
    # Once the watchdog has seen it answer, a hang counts at once (the next test).
    state = "/var/lib/cosyvoice-watchdog/state.json"
    deadline = time.monotonic() + 30
    seen: dict[str, Any] = {}
    while time.monotonic() < deadline and not (seen.get("pid") == new and seen.get("ready")):
        time.sleep(1)
        seen = json.loads(host.run(f"cat {state} 2>/dev/null || echo '{{}}'").stdout or "{}")
    assert seen.get("pid") == new and seen.get("ready"), f"{seen}\n{evidence(host)}"


def test_a_changed_watchdog_script_restarts_the_looping_watchdog(host, name: str) -> None:  # type: ignore[no-untyped-def]
    """The watchdog is one long-lived process: a new script must restart it (supervisorctl
    update only acts on a changed program file)."""
    script = "/opt/cosyvoice/cosyvoice-watchdog"
    good = host.file(script).sha256sum
    before = host.run("supervisorctl status cosyvoice-watchdog").stdout.split()[3]
    host.run(f"echo '# edited by hand' >> {script}")
    assert converge(name)["changed"] >= 2
    assert host.file(script).sha256sum == good
    after = host.run("supervisorctl status cosyvoice-watchdog").stdout.split()
    assert after[1] == "RUNNING" and after[3] != before, after


def test_a_hung_app_is_restarted_by_the_watchdog(host, ip: str) -> None:  # type: ignore[no-untyped-def]
    """SIGSTOP: the watchdog (probe every 5 s, 2 failures) restarts it; it wakes the process
    first, so supervisord's stop does not wait out stopwaitsecs (30 s)."""
    before = app_pid(host)
    start = time.monotonic()
    host.run(f"kill -STOP {before}")
    time.sleep(3)
    assert health(ip) == -1
    # The watchdog's restart wakes the stopped process (SIGCONT) before supervisord stops it: for
    # a moment the old process answers again. Serving again means a new process answering.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (app_pid(host) not in (0, before) and health(ip) == 200):
        time.sleep(0.5)
    took = time.monotonic() - start
    assert app_pid(host) != before, evidence(host)
    assert health(ip) == 200, evidence(host)
    assert "restarting cosyvoice" in host.file("/var/log/cosyvoice/cosyvoice-watchdog.log").content_string
    assert took < 40, f"hung app served again only after {took:.0f} s"
    print(f"\nFIGURE supervisord: SIGSTOP -> serving again in {time.monotonic() - start:.1f} s")


def test_supervisord_killed_is_named_and_a_rerun_leaves_one_of_each(host, ip: str, name: str,
                                                                     tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """supervisord killed: its programs live on unsupervised. The diagnosis says so; the
    re-run stops the orphans and starts supervisord, which runs exactly one of each."""
    host.run("pkill -KILL -x supervisord")
    time.sleep(1)
    # The orphan still answers (nothing restarts it now): nothing else would notice.
    try:
        wait_healthy(ip, timeout=30)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{evidence(host)}") from None
    proc, report = diagnose(tmp_path, name)
    assert proc.returncode != 0
    assert report["layer"] == "service", report["message"]
    assert "supervisord is not running" in report["cause"] or "does not answer" in report["cause"], report["cause"]
    assert "supervisord -c" in report["fix"]
    counts = converge(name)
    assert counts["changed"] >= 1
    wait_healthy(ip)
    deadline = time.monotonic() + 30
    while not app_pid(host) and time.monotonic() < deadline:
        time.sleep(0.5)
    launchers = host.run("pgrep -u cosyvoice -f -- '-m cosyvoice_launcher '").stdout.split()
    # [g]: the pattern must not match the shell that runs pgrep.
    watchdogs = host.run("pgrep -f -- 'cosyvoice-watchdo[g] --manager'").stdout.split()
    assert launchers == [str(app_pid(host))], launchers
    assert len(watchdogs) == 1, watchdogs
    assert converge(name)["changed"] == 0


# Bad input for this kind of host fails in the preflight, naming what to change, and
# changes nothing (the program file and the process stay as they were).
BAD_INPUTS = {
    "systemd_forced_without_systemd": ({"cosyvoice_process_manager": "systemd"},
                                       "cosyvoice_process_manager=systemd, but systemd is not running on this host"),
    "proxy_on_a_container_platform": ({"cosyvoice_exposure": "proxy"},
                                      "cosyvoice_exposure=proxy on cosyvoice_platform=autodl"),
    "port_the_platform_does_not_publish": ({"cosyvoice_server_port": 7860},
                                           "cosyvoice_platform=autodl only publishes port(s) 6006, 6008"),
    "security_group_on_a_container_platform": ({"cloud_provider": "aws", "cloud_region": "eu-west-1"},
                                               "Set cloud_provider: none for this host"),
    "host_firewall_on_a_container_platform": ({"os_firewall_backend": "ufw"},
                                              "os_firewall_backend (set in the inventory) is 'ufw'"),
    "timer_without_systemd": ({"cosyvoice_scheduled_restart": "*-*-* 04:00:00"},
                              "cosyvoice_scheduled_restart needs systemd timers"),
}


def test_bad_inputs_fail_in_preflight_and_change_nothing(host) -> None:  # type: ignore[no-untyped-def]
    from concurrent.futures import ThreadPoolExecutor

    before = (host.file(CONF).sha256sum, app_pid(host))

    def run(case: str) -> tuple[str, subprocess.CompletedProcess[str]]:
        extra = BAD_INPUTS[case][0]
        return case, ansible_playbook("molecule/supervisord/converge.yml", "-e", json.dumps(extra))

    with ThreadPoolExecutor(max_workers=3) as pool:
        results = dict(pool.map(run, BAD_INPUTS))
    for case, proc in results.items():
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0, f"{case}: site.yml passed:\n{out[-3000:]}"
        assert BAD_INPUTS[case][1] in " ".join(out.split()), f"{case}: message missing:\n{out[-3000:]}"
        assert "PLAY [CosyVoice3 service" not in out, f"{case}: got past the preflight:\n{out[-3000:]}"
    assert (host.file(CONF).sha256sum, app_pid(host)) == before
