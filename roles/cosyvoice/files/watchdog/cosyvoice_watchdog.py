#!/usr/bin/python3
"""Health watchdog for the CosyVoice service, run by a systemd timer (stdlib only).

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


def log(message: str, priority: int = syslog.LOG_INFO) -> None:
    syslog.syslog(priority, message)
    print(message, file=sys.stderr if priority <= syslog.LOG_WARNING else sys.stdout)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--unit", required=True)
    ap.add_argument("--url", required=True)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--failures", type=int, default=3)
    ap.add_argument("--gpu-memory-max-mib", type=int, default=0)
    ap.add_argument("--state-dir", default=os.environ.get("STATE_DIRECTORY", "/var/lib/cosyvoice-watchdog"))
    args = ap.parse_args(argv)
    syslog.openlog("cosyvoice-watchdog")

    state = Path(args.state_dir) / "failures"
    if systemctl("is-active", "--quiet", args.unit).returncode != 0:
        state.unlink(missing_ok=True)
        return 0  # stopped or restarting: systemd's Restart= and the operator own that
    previous = int(state.read_text()) if state.exists() else 0
    ok, error = probe(args.url, args.timeout)
    gpu = None
    if args.gpu_memory_max_mib > 0:
        main_pid = int(systemctl("show", "-p", "MainPID", "--value", args.unit).stdout.strip() or 0)
        gpu = gpu_memory_of(main_pid) if main_pid else None
    decision = decide(ok, error, previous, args.failures, gpu, args.gpu_memory_max_mib)
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(str(decision.failures))
    if decision.restart:
        log(f"restarting {args.unit}: {decision.reason}", syslog.LOG_WARNING)
        result = systemctl("restart", "--no-block", args.unit)
        if result.returncode != 0:
            log(f"restart of {args.unit} failed: {result.stderr.strip()}", syslog.LOG_ERR)
            return 1
    elif decision.failures:
        log(decision.reason, syslog.LOG_WARNING)
    return 0


if __name__ == "__main__":
    sys.exit(main())
