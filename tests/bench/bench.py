#!/usr/bin/env python3
"""make bench: how long a re-run of site.yml takes on converged hosts, as ratios measured in one run.

    .venv/bin/python tests/bench/bench.py [--hosts 8] [--connections docker,ssh] [--repeat 3] [--keep]

Creates N systemd target containers (cv-bench-1..N, the molecule platform of
.config/molecule/config.yml), gives them the test fixtures and sshd, converges
cv-bench-1, then times on it, over each connection:

    bare       a facts + ping play (the floor)
    noop       site.yml on the converged host (direct exposure), verify included
    check      site.yml --check --diff
    proxy      site.yml no-op in proxy exposure (after one converge into proxy)

and, with --hosts > 1, converges the others and times one no-op site.yml over all of
them against the same run on one host. Each timing is taken --repeat times, the runs
of each kind interleaved with the others' (a bare play before each no-op), and reported
as the mean with the spread: a single run on a shared machine moves by a fifth.
Prints a table with the ratios (of the means) and the 10 slowest tasks of each run,
and writes reports/bench.md and reports/bench.json.
Not a CI test: a benchmark (numbers depend on the machine; ratios are what to compare).
Traffic: the docker bridge (the project's own containers) only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from string import Template
from typing import Any

import yaml

PROJECT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
STATE = PROJECT / ".cache" / "bench"
FIXTURES = PROJECT / "molecule" / "shared" / "fixture-vars.yml"
PROFILE_LINE = re.compile(r"^(?P<task>.+?) -{3,} (?P<s>\d+\.\d+)s\s*$")
RECAP = re.compile(r"^(?P<host>\S+)\s*:\s*ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<u>\d+)\s+"
                   r"failed=(?P<failed>\d+)\s+skipped=(?P<skipped>\d+)")


def busy_cpu_seconds() -> float:
    """CPU time the whole machine spent busy so far (/proc/stat): controller, docker and every target."""
    fields = [int(x) for x in Path("/proc/stat").read_text(encoding="ascii").splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------- targets


def docker_run_args(name: str) -> list[str]:
    """`docker run` arguments for the molecule platform (one definition: .config/molecule/config.yml)."""
    cfg = yaml.safe_load((PROJECT / ".config" / "molecule" / "config.yml").read_text(encoding="utf-8"))
    plat = cfg["platforms"][0]
    env = {"MOLECULE_SCENARIO_NAME": name.removeprefix("cv-"), **os.environ}

    def sub(value: str) -> str:
        # ${VAR:-default} and ${VAR} as molecule expands them.
        value = re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: env.get(m[1]) or m[2], value)
        return Template(value).safe_substitute(env)

    args = ["--name", name, "--hostname", name, "--detach", "--cgroupns", plat["cgroupns_mode"]]
    for cap in plat.get("capabilities", []):
        args += ["--cap-add", cap]
    for opt in plat.get("security_opts", []):
        args += ["--security-opt", opt]
    for mount in plat.get("tmpfs", []):
        args += ["--tmpfs", mount]
    for vol in plat.get("volumes", []):
        vol = sub(vol)
        Path(vol.split(":")[0]).mkdir(parents=True, exist_ok=True)
        args += ["--volume", vol]
    return args + [sub(plat["image"]), plat["command"]]


def create_targets(count: int) -> dict[str, str]:
    """{name: ip} of cv-bench-1..count, created fresh."""
    names = [f"cv-bench-{i}" for i in range(1, count + 1)]
    destroy_targets()
    for name in names:
        subprocess.run(["docker", "run", *docker_run_args(name)], check=True, capture_output=True)
    ips = {}
    for name in names:
        for _ in range(100):
            ip = subprocess.run(["docker", "inspect", "-f", "{{.NetworkSettings.IPAddress}}", name],
                                capture_output=True, text=True, check=True).stdout.strip()
            up = subprocess.run(["docker", "exec", name, "systemctl", "is-system-running"],
                                capture_output=True, text=True, check=False).stdout.strip()
            if ip and up in ("running", "degraded"):
                break
            time.sleep(0.3)
        ips[name] = ip
    return ips


def destroy_targets() -> None:
    out = subprocess.run(["docker", "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True,
                         check=True).stdout.split()
    stale = [n for n in out if n.startswith("cv-bench-")]
    if stale:
        subprocess.run(["docker", "rm", "-f", *stale], check=True, capture_output=True)


def write_inventories(ips: dict[str, str], key: Path) -> dict[str, Path]:
    common = {"cosyvoice_exposure": "direct",
              "cosyvoice_public_address": "{{ ansible_facts['default_ipv4']['address'] }}",
              "cosyvoice_auth_users": [{"name": "bench", "password": "bench-password-1"}]}
    docker = {name: {"ansible_connection": "community.docker.docker",
                     "ansible_python_interpreter": "/usr/bin/python3"} for name in ips}
    ssh = {name: {"ansible_host": ip, "ansible_user": "root", "ansible_ssh_private_key_file": str(key),
                  "ansible_python_interpreter": "/usr/bin/python3",
                  "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"}
           for name, ip in ips.items()}
    paths = {}
    for label, hosts in (("docker", docker), ("ssh", ssh)):
        path = STATE / f"inventory-{label}.yml"
        inv = {"all": {"children": {"gpu_servers": {"hosts": hosts, "vars": common}}}}
        path.write_text(yaml.safe_dump(inv, sort_keys=False), encoding="utf-8")
        paths[label] = path
    return paths


# --------------------------------------------------------------------------- runs


def playbook(label: str, inventory: Path, book: str, *args: str, limit: str | None = None,
             expect_changed: int | None = None) -> dict[str, Any]:
    # The project's ansible.cfg decides the callbacks (profile_tasks, warm_plugins): what users run.
    env = {k: v for k, v in os.environ.items() if k != "ANSIBLE_CALLBACKS_ENABLED"}
    env.update(ANSIBLE_CONFIG=str(PROJECT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               PROFILE_TASKS_TASK_OUTPUT_LIMIT="10", PROFILE_TASKS_SORT_ORDER="descending")
    cmd = [str(BIN / "ansible-playbook"), "-i", str(inventory), "-e", f"@{FIXTURES}", book, *args]
    if limit:
        cmd += ["--limit", limit]
    started, cpu_before = time.monotonic(), busy_cpu_seconds()
    proc = subprocess.run(cmd, cwd=PROJECT, env=env, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    cpu = busy_cpu_seconds() - cpu_before
    (STATE / f"{label}.log").write_text(proc.stdout + proc.stderr, encoding="utf-8")
    recap = {m["host"]: {k: int(v) for k, v in m.groupdict().items() if k != "host"}
             for m in map(RECAP.match, proc.stdout.split("PLAY RECAP")[-1].splitlines()) if m}
    tail = proc.stdout.split("PLAY RECAP")[-1]
    slowest = [(m["task"].strip(), float(m["s"])) for m in map(PROFILE_LINE.match, tail.splitlines()) if m][:10]
    tasks = len(re.findall(r"^(?:TASK|RUNNING HANDLER) \[", proc.stdout, re.MULTILINE))
    result = {"label": label, "seconds": round(seconds, 1), "rc": proc.returncode, "recap": recap,
              "task_headers": tasks, "slowest": slowest, "cpu_seconds": round(cpu, 1)}
    changed = sum(r["changed"] for r in recap.values())
    log(f"{label}: {seconds:.1f} s, {cpu:.1f} CPU-s, rc {proc.returncode}, {len(recap)} host(s), changed {changed}, "
        f"{tasks} task headers")
    if proc.returncode != 0:
        raise SystemExit(f"{label} failed (rc {proc.returncode}); log: {STATE / (label + '.log')}\n"
                         + proc.stdout[-3000:])
    if expect_changed is not None and changed != expect_changed:
        raise SystemExit(f"{label}: expected {expect_changed} changed, got {changed}; log: {STATE / (label + '.log')}")
    return result


def merge(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Repeated runs of one kind as one: mean seconds and CPU-s, every sample's seconds, the last run's
    recap and slowest tasks."""
    seconds = [r["seconds"] for r in samples]
    return {**samples[-1], "seconds": round(sum(seconds) / len(seconds), 2), "samples": seconds,
            "cpu_seconds": round(sum(r["cpu_seconds"] for r in samples) / len(samples), 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hosts", type=int, default=8, help="fleet size for the parallel re-run (1: skip it)")
    ap.add_argument("--connections", default="docker,ssh")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each timing (mean and spread reported)")
    ap.add_argument("--keep", action="store_true", help="leave the containers running")
    ns = ap.parse_args()
    connections = [c for c in ns.connections.split(",") if c]
    STATE.mkdir(parents=True, exist_ok=True)
    key = STATE / "id_ed25519"
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    runs: dict[str, dict[str, Any]] = {}
    samples: dict[str, list[dict[str, Any]]] = defaultdict(list)
    repeat = max(ns.repeat, 1)
    started = time.monotonic()
    try:
        log(f"creating {ns.hosts} target(s)")
        ips = create_targets(max(ns.hosts, 1))
        inv = write_inventories(ips, key)
        os.environ["BENCH_SSH_PUBLIC_KEY"] = (STATE / "id_ed25519.pub").read_text().strip()
        playbook("prepare", inv["docker"], "tests/bench/prepare.yml")
        one = "cv-bench-1"
        runs["first_converge"] = playbook("first_converge", inv["docker"], "site.yml", limit=one)
        for conn in connections:
            for i in range(1, repeat + 1):
                samples[f"bare_{conn}"].append(playbook(f"bare_{conn}_{i}", inv[conn], "tests/bench/bare.yml", limit=one))
                samples[f"noop_direct_{conn}"].append(playbook(f"noop_direct_{conn}_{i}", inv[conn], "site.yml",
                                                               limit=one, expect_changed=0))
                samples[f"check_{conn}"].append(playbook(f"check_{conn}_{i}", inv[conn], "site.yml", "--check",
                                                         "--diff", limit=one, expect_changed=0))
        if ns.hosts > 1:
            runs["fleet_converge"] = playbook("fleet_converge", inv["docker"], "site.yml",
                                              limit=f"gpu_servers:!{one}")
            for conn in connections:
                for i in range(1, repeat + 1):
                    samples[f"fleet_one_{conn}"].append(playbook(f"fleet_one_{conn}_{i}", inv[conn], "site.yml",
                                                                 limit=one, expect_changed=0))
                    samples[f"fleet_all_{conn}"].append(playbook(f"fleet_all_{conn}_{i}", inv[conn], "site.yml",
                                                                 expect_changed=0))
        proxy = ("-e", "cosyvoice_exposure=proxy")
        runs["proxy_converge"] = playbook("proxy_converge", inv["docker"], "site.yml", *proxy, limit=one)
        for conn in connections:
            for i in range(1, repeat + 1):
                samples[f"bare_{conn}"].append(playbook(f"bare_{conn}_p{i}", inv[conn], "tests/bench/bare.yml",
                                                        limit=one))
                samples[f"noop_proxy_{conn}"].append(playbook(f"noop_proxy_{conn}_{i}", inv[conn], "site.yml", *proxy,
                                                              limit=one, expect_changed=0))
        runs.update({kind: merge(runs_of_kind) for kind, runs_of_kind in samples.items()})
    finally:
        if not ns.keep:
            destroy_targets()
    report = summarise(runs, connections, ns.hosts, time.monotonic() - started, repeat)
    print(report)
    out = PROJECT / "reports"
    out.mkdir(exist_ok=True)
    (out / "bench.md").write_text(report, encoding="utf-8")
    (out / "bench.json").write_text(json.dumps(runs, indent=2) + "\n", encoding="utf-8")
    return 0


def spread(run: dict[str, Any]) -> str:
    low, high = min(run["samples"]), max(run["samples"])
    return f"{low:.1f}-{high:.1f}" if len(run["samples"]) > 1 else ""


def summarise(runs: dict[str, dict[str, Any]], connections: list[str], hosts: int, total: float,
              repeat: int = 1) -> str:
    cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True,
                         text=True, check=False).stdout.strip()
    lines = [f"# make bench ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs {cpu}, {platform.platform()}, "
             f"{total / 60:.0f} min in all; each timing the mean of {repeat} runs)", "",
             "| run | seconds (mean) | min-max of the runs | ratio of the means | goal | busy CPU-s (machine, mean) |", "|---|---:|---:|---:|---|---:|"]
    for conn in connections:
        bare = runs[f"bare_{conn}"]["seconds"]
        lines.append(f"| bare facts + ping ({conn}) | {bare} | {spread(runs[f'bare_{conn}'])} | 1.0 | | "
                     f"{runs[f'bare_{conn}']['cpu_seconds']} |")
        for key, label in ((f"noop_direct_{conn}", "site.yml no-op, direct"),
                           (f"noop_proxy_{conn}", "site.yml no-op, proxy"),
                           (f"check_{conn}", "site.yml --check --diff")):
            if key in runs:
                goal = "<= 5x bare" if "no-op" in label else ""
                lines.append(f"| {label} ({conn}) | {runs[key]['seconds']} | {spread(runs[key])} | "
                             f"{runs[key]['seconds'] / bare:.1f}x | {goal} | {runs[key]['cpu_seconds']} |")
        if f"fleet_all_{conn}" in runs:
            one, all_ = runs[f"fleet_one_{conn}"]["seconds"], runs[f"fleet_all_{conn}"]["seconds"]
            lines.append(f"| site.yml no-op, {hosts} hosts vs 1 ({conn}) | {all_} vs {one} | "
                         f"{spread(runs[f'fleet_all_{conn}'])} vs {spread(runs[f'fleet_one_{conn}'])} | {all_ / one:.1f}x | "
                         f"<= 2x one host | {runs[f'fleet_all_{conn}']['cpu_seconds']} vs "
                         f"{runs[f'fleet_one_{conn}']['cpu_seconds']} |")
            # What the machine allows: the fleet run's busy CPU time spread over every CPU,
            # against one host's wall time (controller and targets share these CPUs here).
            floor = runs[f"fleet_all_{conn}"]["cpu_seconds"] / (os.cpu_count() or 1)
            lines.append(f"| CPU floor of that run ({conn}): {runs[f'fleet_all_{conn}']['cpu_seconds']} CPU-s "
                         f"/ {os.cpu_count()} CPUs | {floor:.1f} vs {one} | | {floor / one:.1f}x | | |")
    fc = runs["first_converge"]
    lines += ["", f"First converge of a fresh host (docker connection): {fc['seconds']} s, "
              f"{fc['task_headers']} task headers.", "", "Slowest tasks:", ""]
    for key in ("first_converge", f"noop_direct_{connections[0]}", f"noop_proxy_{connections[0]}"):
        if key in runs:
            lines.append(f"- {key}: " + "; ".join(f"{t} {s:.1f}s" for t, s in runs[key]["slowest"]))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
