"""The health watchdog's decisions (roles/cosyvoice/files/watchdog)."""

from __future__ import annotations

import argparse
import os
import subprocess
from pathlib import Path

import pytest

import cosyvoice_watchdog as wd  # roles/cosyvoice/files/watchdog, on sys.path through tests/conftest.py


def test_healthy_resets_the_count():
    d = wd.decide(True, "", previous_failures=2, threshold=3)
    assert (d.restart, d.failures) == (False, 0)


def test_failures_count_up_then_restart():
    d1 = wd.decide(False, "connection refused", 0, 3)
    d2 = wd.decide(False, "no answer within 10 s", d1.failures, 3)
    d3 = wd.decide(False, "no answer within 10 s", d2.failures, 3)
    assert [d.restart for d in (d1, d2, d3)] == [False, False, True]
    assert "3 times in a row" in d3.reason and "no answer" in d3.reason
    assert d3.failures == 0


def test_gpu_memory_over_the_limit_restarts_even_when_healthy():
    d = wd.decide(True, "", 0, 3, gpu_used_mib=30000, gpu_max_mib=20000)
    assert d.restart and "30000 MiB" in d.reason


def test_gpu_limit_off_or_unknown_usage_does_nothing():
    assert not wd.decide(True, "", 0, 3, gpu_used_mib=30000, gpu_max_mib=0).restart
    assert not wd.decide(True, "", 0, 3, gpu_used_mib=None, gpu_max_mib=100).restart


def test_parse_compute_apps_sums_the_pid():
    out = "1234, 1500\n999, 80\n1234, 500\n"
    assert wd.parse_compute_apps(out, 1234) == 2000
    assert wd.parse_compute_apps(out, 42) is None
    assert wd.parse_compute_apps("No devices were found\n", 1234) is None


def test_probe_reports_refused_connections():
    ok, error = wd.probe("http://127.0.0.1:9/healthz", timeout=1)
    assert not ok and error


# --- The start grace and the per-process state (once() with a fake manager) ---

class FakeService:
    """A manager whose program is RUNNING as pid; records restarts."""

    def __init__(self, pid: int = 100, active: bool = True) -> None:
        self.pid, self.active, self.restarts = pid, active, 0

    def status(self) -> tuple[bool, int]:
        return self.active, self.pid

    def restart(self) -> subprocess.CompletedProcess[str]:
        self.restarts += 1
        return subprocess.CompletedProcess([], 0, "", "")


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    clock = {"now": 1000.0, "ok": False}
    monkeypatch.setattr(wd.time, "time", lambda: clock["now"])
    monkeypatch.setattr(wd, "probe", lambda url, timeout: (clock["ok"], "no answer within 2 s"))
    monkeypatch.setattr(wd, "process_age", lambda pid: None)
    monkeypatch.setattr(wd, "log", lambda message, priority=0: clock.setdefault("log", []).append(message))
    args = argparse.Namespace(state_dir=str(tmp_path), url="http://x/healthz", timeout=2.0, failures=2,
                              gpu_memory_max_mib=0, unit="cosyvoice", start_timeout=60.0,
                              ready_file=str(tmp_path / "cosyvoice.ready"))

    def once(service: FakeService, *, at: float, ok: bool) -> int:
        clock["now"], clock["ok"] = at, ok
        return wd.once(args, service)

    once.clock = clock  # type: ignore[attr-defined]
    once.state = lambda: wd.State.load(tmp_path / "state.json")  # type: ignore[attr-defined]
    return once


def test_a_process_that_never_answered_is_left_to_load_for_the_start_timeout(run) -> None:  # type: ignore[no-untyped-def]
    svc = FakeService(pid=100)
    for at in (1000, 1010, 1020, 1030, 1050):  # 50 s of failed probes: still starting
        run(svc, at=at, ok=False)
    assert svc.restarts == 0 and run.state().failures == 0
    run(svc, at=1061, ok=False)  # past 60 s: failures count (1 of 2)
    assert svc.restarts == 0 and run.state().failures == 1
    run(svc, at=1071, ok=False)
    assert svc.restarts == 1
    assert "has not been ready since it started 71 s ago" in run.clock["log"][-1]


def test_a_process_that_said_it_is_ready_is_restarted_after_the_failures_alone(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Loaded and hung before any probe saw it answer: the launcher's ready file says so."""
    svc = FakeService(pid=100)
    run(svc, at=1000, ok=False)  # loading
    (tmp_path / "cosyvoice.ready").write_text("100\n")
    os.utime(tmp_path / "cosyvoice.ready", (1001, 1001))
    run(svc, at=1005, ok=False)
    run(svc, at=1010, ok=False)
    assert svc.restarts == 1 and "since it started" not in run.clock["log"][-1]


def test_said_ready_needs_this_pid_in_a_file_written_after_it_started(tmp_path: Path) -> None:
    ready = tmp_path / "cosyvoice.ready"
    assert not wd.said_ready(str(ready), 100, started=0)  # no file
    ready.write_text("100\n")
    os.utime(ready, (500, 500))
    assert wd.said_ready(str(ready), 100, started=400)
    assert not wd.said_ready(str(ready), 101, started=400)  # another process's
    assert not wd.said_ready(str(ready), 100, started=600)  # left from before this process started
    assert not wd.said_ready("", 100, started=0)
    assert not wd.said_ready(str(ready), 0, started=0)


def test_once_it_answered_a_hang_is_restarted_after_the_failures_alone(run) -> None:  # type: ignore[no-untyped-def]
    svc = FakeService(pid=100)
    run(svc, at=1000, ok=True)
    run(svc, at=1005, ok=False)
    run(svc, at=1010, ok=False)
    assert svc.restarts == 1
    assert "2 times in a row" in run.clock["log"][-1] and "since it started" not in run.clock["log"][-1]


def test_a_new_process_starts_with_a_clean_slate(run) -> None:  # type: ignore[no-untyped-def]
    """kill -9: the failed probe of the dead process must not count against the next one."""
    svc = FakeService(pid=100)
    run(svc, at=1000, ok=True)
    run(svc, at=1005, ok=False)  # the old process died: one failure
    svc.pid = 101  # the manager started a new one, not ready yet
    run(svc, at=1010, ok=False)
    run(svc, at=1015, ok=False)
    assert svc.restarts == 0
    assert (run.state().pid, run.state().ready, run.state().failures) == (101, False, 0)


def test_a_stopped_service_is_left_alone_and_forgotten(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "failures").write_text("2")  # an older watchdog's state file
    svc = FakeService(pid=100)
    run(svc, at=1000, ok=True)
    assert not (tmp_path / "failures").exists() and run.state().ready
    svc.active = False
    run(svc, at=1005, ok=False)
    assert svc.restarts == 0 and not (tmp_path / "state.json").exists()


def test_starting_is_a_process_that_never_answered_within_its_start_timeout() -> None:
    assert wd.starting(False, False, running_for=10.0, start_timeout=60.0)
    assert not wd.starting(False, False, running_for=0.0, start_timeout=0.0)  # systemd: off
    assert not wd.starting(False, False, running_for=61.0, start_timeout=60.0)
    assert not wd.starting(True, False, running_for=10.0, start_timeout=60.0)
    assert not wd.starting(False, True, running_for=10.0, start_timeout=60.0)


def test_the_start_is_counted_from_the_process_age_when_proc_knows_it(tmp_path: Path) -> None:
    state = wd.State(pid=5, since=1.0, ready=True, failures=1)
    assert state.follow(5, now=500.0, age=30.0) is state
    fresh = state.follow(6, now=500.0, age=30.0)
    assert (fresh.pid, fresh.since, fresh.ready, fresh.failures) == (6, 470.0, False, 0)
    assert state.follow(7, now=500.0).since == 500.0
    age = wd.process_age(os.getpid())
    assert age is not None and 0 <= age < 3600
    assert wd.process_age(2**22 + 12345) is None
    proc = tmp_path / "proc"
    (proc / "42").mkdir(parents=True)
    (proc / "uptime").write_text("1000.50 1990.00\n")
    fields = ["S"] + ["0"] * 18 + [str(900 * os.sysconf("SC_CLK_TCK"))] + ["0"] * 30
    (proc / "42" / "stat").write_text("42 (py thon) (x)) " + " ".join(fields) + "\n")
    assert wd.process_age(42, proc) == pytest.approx(100.5)


def test_state_survives_a_round_trip_and_junk_reads_as_fresh(tmp_path: Path) -> None:
    path = tmp_path / "d" / "state.json"
    wd.State(pid=9, since=12.5, ready=True, failures=2).save(path)
    assert wd.State.load(path) == wd.State(pid=9, since=12.5, ready=True, failures=2)
    for junk in ("2", "{}", "not json", '{"pid": "x"}'):
        path.write_text(junk)
        assert wd.State.load(path) == wd.State()


def test_the_managers_status_is_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    out = {"text": ""}
    monkeypatch.setattr(wd.subprocess, "run",
                        lambda *a, **k: subprocess.CompletedProcess(a, 0, out["text"], ""))
    sup = wd.Supervisord("cosyvoice")
    out["text"] = "cosyvoice                        RUNNING   pid 1517, uptime 0:00:05\n"
    assert sup.status() == (True, 1517)
    for text in ("cosyvoice                        STARTING\n", "cosyvoice BACKOFF Exited too quickly\n",
                 "cosyvoice: ERROR (no such process)\n", "unix:///var/run/supervisor.sock no such file\n"):
        out["text"] = text
        assert sup.status() == (False, 0)
    sysd = wd.Systemd("cosyvoice.service")
    out["text"] = "MainPID=812\nActiveState=active\n"
    assert sysd.status() == (True, 812)
    out["text"] = "MainPID=0\nActiveState=activating\n"
    assert sysd.status() == (False, 0)
