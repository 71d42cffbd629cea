#!/usr/bin/python3
"""Health watchdog for the CosyVoice service, run by a systemd timer (stdlib only).

Under supervisord (hosts without systemd) it is a program of its own that loops
(--manager supervisord --interval N) and asks supervisorctl instead of systemctl.

Each run probes the health endpoint once. After --failures consecutive failed
probes (refused, HTTP error, or no answer within --timeout: a hung process) it
restarts the service and logs why. Optionally it also restarts when the
service's GPU memory passes --gpu-memory-max-mib (the seed article's advice on
slow GPU memory leaks). A service that is not active is left to systemd
(Restart=always) and to the operator: the watchdog never starts a stopped unit.

A process that is not ready yet is still starting (the model may take minutes
to load): its failed probes do not count until it has run for --start-timeout
seconds (systemd's TimeoutStartSec). Under systemd a Type=notify unit is only
active once the launcher says READY, so 0 (off) is right there; supervisord
calls a program RUNNING after a few seconds of life, ready or not, so its
watchdog gets the start timeout and --ready-file, where the launcher writes its
pid once loaded (COSYVOICE_READY_FILE). A process is ready once that file holds
its pid or once a probe got an answer. The state file follows the process (its
pid), so failures of a process that died never count against the next one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import syslog
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Decision:
    restart: bool
    failures: int
    reason: str


def decide(probe_ok: bool, probe_error: str, previous_failures: int, threshold: int,
           gpu_used_mib: int | None = None, gpu_max_mib: int = 0) -> Decision:
    """Pure decision logic: what to do after one probe."""
    if gpu_max_mib > 0 and gpu_used_mib is not None and gpu_used_mib > gpu_max_mib:
        return Decision(True, 0, f"GPU memory {gpu_used_mib} MiB is over the limit of {gpu_max_mib} MiB")
    if probe_ok:
        return Decision(False, 0, "healthy")
    failures = previous_failures + 1
    if failures >= threshold:
        return Decision(True, 0, f"health check failed {failures} times in a row (last: {probe_error})")
    return Decision(False, failures, f"health check failed ({failures}/{threshold}): {probe_error}")


def starting(probe_ok: bool, ready: bool, running_for: float, start_timeout: float) -> bool:
    """True while a process that has not been ready is within its start timeout."""
    return not probe_ok and not ready and running_for < start_timeout


@dataclass
class State:
    """What the watchdog remembers between probes, for one process (pid)."""

    pid: int = 0
    since: float = 0.0  # when this pid started (time.time(); when first seen if /proc does not say)
    ready: bool = False  # it said it is ready (--ready-file) or answered once
    failures: int = 0

    @classmethod
    def load(cls, path: Path) -> State:
        try:
            data = json.loads(path.read_text())
            return cls(int(data["pid"]), float(data["since"]), bool(data["ready"]), int(data["failures"]))
        except (OSError, ValueError, TypeError, KeyError):
            return cls()

    def follow(self, pid: int, now: float, age: float | None = None) -> State:
        """This state when pid is the process it is about, else a fresh one for pid
        (started age seconds ago when known, else now)."""
        return self if pid == self.pid else State(pid=pid, since=now - (age or 0.0))

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.__dict__))
        tmp.replace(path)


def said_ready(path: str, pid: int, started: float) -> bool:
    """The launcher wrote pid to path (COSYVOICE_READY_FILE) once it had loaded, after this
    process started (a file left from before a container restart may hold the same pid)."""
    try:
        file = Path(path)
        return (bool(path) and pid > 0 and file.stat().st_mtime >= started - 1
                and file.read_text().strip() == str(pid))
    except OSError:
        return False


def process_age(pid: int, proc: Path = Path("/proc")) -> float | None:
    """Seconds since pid started (/proc/<pid>/stat field 22 against /proc/uptime), None if unknown."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
        uptime = float((proc / "uptime").read_text().split()[0])
        # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
        start_ticks = int(stat[stat.rindex(")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return None
    return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))


def probe(url: str, timeout: float) -> tuple[bool, str]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as resp:
            return resp.status == 200, f"HTTP {resp.status}"
    except urllib.error.HTTPError as exc:
        return False, f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return False, f"no answer within {timeout:g} s" if "timed out" in str(reason) else str(reason)


def gpu_memory_of(pid: int, smi: str = "nvidia-smi") -> int | None:
    """MiB of GPU memory used by pid (None when nvidia-smi is absent or says nothing)."""
    try:
        out = subprocess.run([smi, "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=20, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_compute_apps(out, pid)


def parse_compute_apps(output: str, pid: int) -> int | None:
    total, seen = 0, False
    for line in output.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit() and int(parts[0]) == pid:
            total, seen = total + int(parts[1]), True
    return total if seen else None


def systemctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemctl", *args], capture_output=True, text=True, check=False)


class Systemd:
    """The service as a systemd unit."""

    def __init__(self, unit: str) -> None:
        self.unit = unit

    def status(self) -> tuple[bool, int]:
        """(active, main pid): a Type=notify unit is active once the launcher said READY."""
        out = systemctl("show", "-p", "ActiveState", "-p", "MainPID", self.unit).stdout
        props = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        pid = props.get("MainPID", "0")
        return props.get("ActiveState") == "active", int(pid) if pid.isdigit() else 0

    def restart(self) -> subprocess.CompletedProcess[str]:
        return systemctl("restart", "--no-block", self.unit)


class Supervisord:
    """The service as a supervisord program."""

    def __init__(self, program: str, config: str = "") -> None:
        self.program = program
        self.argv = ["supervisorctl"] + (["-c", config] if config else [])

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.argv, *args], capture_output=True, text=True, check=False, timeout=120)

    def status(self) -> tuple[bool, int]:
        """(running, pid) from `supervisorctl status <program>`: "cosyvoice RUNNING pid 812, uptime ..."."""
        words = self._run("status", self.program).stdout.split()
        if len(words) > 3 and words[:3] == [self.program, "RUNNING", "pid"] and words[3].rstrip(",").isdigit():
            return True, int(words[3].rstrip(","))
        return False, 0

    def restart(self) -> subprocess.CompletedProcess[str]:
        # systemd sends SIGCONT after SIGTERM; supervisord does not, so a stopped (SIGSTOP)
        # process would sit out stopwaitsecs before the SIGKILL. Wake it first.
        self._run("signal", "CONT", self.program)
        return self._run("restart", self.program)


def log(message: str, priority: int = syslog.LOG_INFO) -> None:
    syslog.syslog(priority, message)
    # Under systemd the journal stamps the line; a supervisord log file does not.
    stamp = "" if os.environ.get("INVOCATION_ID") else time.strftime("%Y-%m-%d %H:%M:%S ")
    print(stamp + message, file=sys.stderr if priority <= syslog.LOG_WARNING else sys.stdout, flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--unit", required=True)
    ap.add_argument("--url", required=True)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--failures", type=int, default=3)
    ap.add_argument("--gpu-memory-max-mib", type=int, default=0)
    ap.add_argument("--start-timeout", type=float, default=0,
                    help="seconds a process that is not ready may take to start before its failures count")
    ap.add_argument("--ready-file", default="",
                    help="where the launcher writes its pid once loaded (supervisord: no Type=notify)")
    ap.add_argument("--state-dir", default=os.environ.get("STATE_DIRECTORY", "/var/lib/cosyvoice-watchdog"))
    ap.add_argument("--manager", choices=("systemd", "supervisord"), default="systemd",
                    help="what supervises --unit (a supervisord program name with supervisord)")
    ap.add_argument("--supervisorctl-config", default="", help="supervisord's config (supervisorctl -c)")
    ap.add_argument("--interval", type=float, default=0,
                    help="probe every N seconds forever (no systemd timer); 0 probes once")
    args = ap.parse_args(argv)
    syslog.openlog("cosyvoice-watchdog")
    service = Supervisord(args.unit, args.supervisorctl_config) if args.manager == "supervisord" else Systemd(args.unit)
    if args.interval <= 0:
        return once(args, service)
    while True:  # a supervisord program: supervisord restarts it if it ever exits
        once(args, service)
        time.sleep(args.interval)


def once(args: argparse.Namespace, service: Systemd | Supervisord) -> int:
    """One probe, and a restart when the decision says so."""
    path = Path(args.state_dir) / "state.json"
    (path.parent / "failures").unlink(missing_ok=True)  # what watchdogs before 1.7 wrote
    active, main_pid = service.status()
    if not active:
        path.unlink(missing_ok=True)
        return 0  # stopped or restarting: the manager's restart policy and the operator own that
    now = time.time()
    state = State.load(path).follow(main_pid, now, process_age(main_pid) if main_pid else None)
    ok, error = probe(args.url, args.timeout)
    state.ready = state.ready or ok or said_ready(args.ready_file, main_pid, state.since)
    if starting(ok, state.ready, now - state.since, args.start_timeout):
        state.save(path)
        return 0  # still loading: its start timeout has not run out
    gpu = None
    if args.gpu_memory_max_mib > 0:
        gpu = gpu_memory_of(main_pid) if main_pid else None
    decision = decide(ok, error, state.failures, args.failures, gpu, args.gpu_memory_max_mib)
    state.failures = decision.failures
    state.save(path)
    if decision.restart:
        reason = decision.reason if state.ready else (
            f"{decision.reason}; it has not been ready since it started {now - state.since:.0f} s ago")
        log(f"restarting {args.unit}: {reason}", syslog.LOG_WARNING)
        result = service.restart()
        if result.returncode != 0:
            log(f"restart of {args.unit} failed: {(result.stderr or result.stdout).strip()}", syslog.LOG_ERR)
            return 1
    elif decision.failures:
        log(decision.reason, syslog.LOG_WARNING)
    return 0


if __name__ == "__main__":
    sys.exit(main())
