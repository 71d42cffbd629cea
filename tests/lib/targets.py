"""Helpers for testinfra tests that look at a molecule container from the controller."""

from __future__ import annotations

import configparser
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]


def project_setting(key: str) -> str:
    """A [defaults] setting of the project's ansible.cfg (molecule runs with its own ansible.cfg)."""
    cfg = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=("#",))
    cfg.read(PROJECT / "ansible.cfg", encoding="utf-8")
    return cfg["defaults"][key]


def project_callbacks() -> str:
    """callbacks_enabled of the project's ansible.cfg."""
    return project_setting("callbacks_enabled")


def isolated_ansible_env(tmp: Path, **extra: str) -> dict[str, str]:
    """An environment for ansible-playbook in `tmp` that ignores the caller's ANSIBLE_* and
    MOLECULE_* settings and the project's ansible.cfg (an empty one), but resolves this collection."""
    (tmp / "none.cfg").write_text("[defaults]\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "MOLECULE_"))}
    env.update(
        ANSIBLE_CONFIG=str(tmp / "none.cfg"),
        ANSIBLE_COLLECTIONS_PATH=str(PROJECT / "collections"),
        ANSIBLE_LOCAL_TEMP=str(tmp / "local"),
        ANSIBLE_HOME=str(tmp / "home"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
        **extra,
    )
    return env


def container_ip(host) -> str:  # type: ignore[no-untyped-def]
    """The target's address on the docker bridge (what users of the demo reach)."""
    out = host.check_output("ip -4 -o addr show scope global")
    for line in out.splitlines():
        parts = line.split()
        if "inet" in parts:
            return parts[parts.index("inet") + 1].split("/")[0]
    raise AssertionError(f"no global IPv4 address on the target: {out!r}")


def tcp_open(ip: str, port: int, timeout: float = 2.0) -> bool:
    """True when a TCP connection from the controller succeeds (False on refuse, drop or timeout)."""
    try:
        with socket.create_connection((ip, port), timeout=timeout):
            return True
    except OSError:
        return False


def molecule_inventory() -> str:
    """The inventory molecule generated for the running scenario."""
    path = os.environ.get("MOLECULE_INVENTORY_FILE")
    if path and Path(path).exists():
        return path
    eph = os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY")
    if eph and (Path(eph) / "inventory").exists():
        return str(Path(eph) / "inventory")
    raise AssertionError("run this test through molecule (MOLECULE_INVENTORY_FILE is not set)")


def ansible_playbook(*args: str, check: bool = False, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    """Run ansible-playbook from the controller venv against the scenario's hosts."""
    env = dict(os.environ)
    env.setdefault("ANSIBLE_CONFIG", str(PROJECT / "ansible.cfg"))
    env["ANSIBLE_FORCE_COLOR"] = "0"
    env["ANSIBLE_NOCOLOR"] = "1"
    # molecule's ansible.cfg sends failures to stderr; keep them next to their task.
    env["ANSIBLE_DISPLAY_FAILED_STDERR"] = "false"
    cmd = [str(Path(sys.executable).with_name("ansible-playbook")), "-i", molecule_inventory(), *args]
    proc = subprocess.run(cmd, cwd=PROJECT, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}")
    return proc


def recap(output: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP counters per host: {'cv-default': {'ok': 40, 'changed': 0, ...}}.

    Only the host lines right after "PLAY RECAP" count (profile_tasks prints
    other "name : value" lines later).
    """
    result: dict[str, dict[str, int]] = {}
    in_recap = False
    for line in output.splitlines():
        if line.startswith("PLAY RECAP"):
            in_recap = True
            continue
        if not in_recap:
            continue
        if not line.strip() or "=" not in line:
            in_recap = False
            continue
        name, _, counters = line.partition(":")
        pairs = [c.split("=", 1) for c in counters.split() if "=" in c]
        if pairs and all(v.isdigit() for _, v in pairs):
            result[name.strip()] = {k: int(v) for k, v in pairs}
    return result


def task_outcomes(output: str) -> dict[str, set[str]]:
    """{task title: the outcomes printed under it (ok, changed, skipping, included, fatal, ...)} of a
    playbook's default output; a title seen more than once gathers the outcomes of every run."""
    outcomes: dict[str, set[str]] = {}
    title = None
    for line in output.splitlines():
        match = re.match(r"^(?:TASK|RUNNING HANDLER) \[(.*)\] \*+", line)
        if match:
            title = match.group(1)
            outcomes.setdefault(title, set())
            continue
        found = re.match(r"^(ok|changed|skipping|included|fatal|failed): ", line)
        if title is not None and found:
            outcomes[title].add(found.group(1))
    return outcomes


def outcome(output: str, fragment: str) -> set[str]:
    """The outcomes of the tasks whose title holds `fragment` (at least one must)."""
    found = [result for title, result in task_outcomes(output).items() if fragment in title]
    assert found, f"no task titled like {fragment!r} in the output"
    return set().union(*found)


def systemd_exposure(host, unit: str) -> float:  # type: ignore[no-untyped-def]
    """The overall exposure figure of `systemd-analyze security UNIT` (0 = best, 10 = worst)."""
    out = host.check_output(f"systemd-analyze security --no-pager {unit}")
    for line in out.splitlines():
        if "Overall exposure level" in line:
            return float(line.split(":", 1)[1].split()[0])
    raise AssertionError(f"no exposure figure in: {out[-500:]}")


def load_json(path: str | os.PathLike[str]) -> object:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def figure(text: str) -> None:
    """Print a measured figure; scripts/run-scenarios copies FIGURE lines into the CI output."""
    for line in str(text).splitlines():
        print(f"\nFIGURE: {line}")
