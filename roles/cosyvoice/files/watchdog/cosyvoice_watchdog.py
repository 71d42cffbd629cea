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
"""

from __future__ import annotations

import argparse
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

    def active(self) -> bool:
        return systemctl("is-active", "--quiet", self.unit).returncode == 0

    def main_pid(self) -> int:
        return int(systemctl("show", "-p", "MainPID", "--value", self.unit).stdout.strip() or 0)

    def restart(self) -> subprocess.CompletedProcess[str]:
        return systemctl("restart", "--no-block", self.unit)


class Supervisord:
    """The service as a supervisord program."""

    def __init__(self, program: str, config: str = "") -> None:
        self.program = program
        self.argv = ["supervisorctl"] + (["-c", config] if config else [])

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.argv, *args], capture_output=True, text=True, check=False, timeout=120)

    def status(self) -> tuple[str, int]:
        """(state, pid) from `supervisorctl status <program>`: ("RUNNING", 812)."""
        words = self._run("status", self.program).stdout.split()
        state = words[1] if len(words) > 1 and words[0] == self.program else ""
        pid = int(words[3].rstrip(",")) if state == "RUNNING" and len(words) > 3 and words[2] == "pid" else 0
        return state, pid

    def active(self) -> bool:
        return self.status()[0] == "RUNNING"

    def main_pid(self) -> int:
        return self.status()[1]

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
    state = Path(args.state_dir) / "failures"
    if not service.active():
        state.unlink(missing_ok=True)
        return 0  # stopped or restarting: the manager's restart policy and the operator own that
    previous = int(state.read_text()) if state.exists() else 0
    ok, error = probe(args.url, args.timeout)
    gpu = None
    if args.gpu_memory_max_mib > 0:
        main_pid = service.main_pid()
        gpu = gpu_memory_of(main_pid) if main_pid else None
    decision = decide(ok, error, previous, args.failures, gpu, args.gpu_memory_max_mib)
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(str(decision.failures))
    if decision.restart:
        log(f"restarting {args.unit}: {decision.reason}", syslog.LOG_WARNING)
        result = service.restart()
        if result.returncode != 0:
            log(f"restart of {args.unit} failed: {(result.stderr or result.stdout).strip()}", syslog.LOG_ERR)
            return 1
    elif decision.failures:
        log(decision.reason, syslog.LOG_WARNING)
    return 0


if __name__ == "__main__":
    sys.exit(main())
