# -*- coding: utf-8 -*-
# Copyright: cosyvoice-deploy maintainers
# Apache License 2.0
"""supervisord's view of a program, in the shape the verify role reads for a systemd unit.

Hosts without systemd as PID 1 (GPU container platforms) run the service as a
supervisord program (the cosyvoice role's `cosyvoice_process_manager`). The
host_probe module reads it with

    supervisorctl status <program>      -> "cosyvoice  RUNNING   pid 812, uptime 0:03:10"
    the program's section of its .conf  -> command, user, directory, autostart, stdout_logfile

and returns it as the properties of a systemd unit (ActiveState, SubState,
MainPID, UnitFileState, FragmentPath, ExecStart, User, ...), so that the
diagnosis judges both the same way. Pure functions (stdlib only): they run on
the host inside the module and on the controller in the tests.

States (supervisord 4, "Process States"): STOPPED, STARTING, RUNNING, BACKOFF
(exited too quickly, will retry), STOPPING, EXITED, FATAL (gave up), UNKNOWN.
"""

from __future__ import annotations

import configparser
import re
import shlex
from typing import Any

from ansible_collections.cosyvoice.deploy.plugins.module_utils.systemd import REDACTED, SECRET_NAME

# supervisord state -> (ActiveState, SubState, Result) of the equivalent systemd unit.
STATES = {
    "RUNNING": ("active", "running", "success"),
    "STARTING": ("activating", "start", "success"),
    "BACKOFF": ("activating", "auto-restart", "exit-code"),
    "STOPPING": ("deactivating", "stop", "success"),
    "STOPPED": ("inactive", "dead", "success"),
    "EXITED": ("failed", "failed", "exit-code"),
    "FATAL": ("failed", "failed", "start-limit-hit"),
    "UNKNOWN": ("failed", "failed", "unknown"),
}
_STATUS = re.compile(r"^(?P<name>\S+)\s+(?P<state>[A-Z]+)\s*(?P<desc>.*)$")
_PID = re.compile(r"\bpid (?P<pid>\d+)")
_ENV_ITEM = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|[^,]*)\s*(?:,|$)')


def parse_status(text: Any) -> dict[str, dict[str, Any]]:
    """`supervisorctl status [names]` output -> {name: {state, description, pid}}.

    Lines that are not a program's status ("cosyvoice: ERROR (no such process)", errors
    about the socket) are left out: a program missing from the result does not exist."""
    programs: dict[str, dict[str, Any]] = {}
    for line in str(text or "").splitlines():
        m = _STATUS.match(line.strip())
        if not m or m.group("state") not in STATES or m.group("name").endswith(":"):
            continue
        pid = _PID.search(m.group("desc"))
        programs[m.group("name")] = {"state": m.group("state"), "description": m.group("desc").strip(),
                                     "pid": int(pid.group("pid")) if pid and m.group("state") in (
                                         "RUNNING", "STOPPING") else 0}
    return programs


def parse_environment(value: Any, redact: bool = True) -> dict[str, str]:
    """supervisord's `environment=A="1",B="x y"` -> {A: 1, B: x y}; secret-looking values redacted."""
    env: dict[str, str] = {}
    for name, raw in _ENV_ITEM.findall(str(value or "")):
        val = raw[1:-1].replace('\\"', '"') if raw.startswith('"') else raw.strip()
        env[name] = REDACTED if redact and SECRET_NAME.search(name) else val
    return env


def read_program(conf_text: Any, program: str) -> dict[str, str]:
    """The [program:<program>] section of a supervisord .conf/.ini text ({} when absent)."""
    parser = configparser.RawConfigParser(strict=False, inline_comment_prefixes=(";",), interpolation=None)
    try:
        parser.read_string(str(conf_text or ""))
    except configparser.Error:
        return {}
    section = f"program:{program}"
    return dict(parser.items(section)) if parser.has_section(section) else {}


def program_state(name: str, status: dict[str, Any] | None, section: dict[str, str], conf_path: str = "",
                  error: str = "") -> dict[str, Any]:
    """One program as host_probe returns a unit: {name, found, properties, unit_file, environment, error}."""
    found = status is not None
    props: dict[str, str] = {"LoadState": "loaded" if found else "not-found"}
    if found:
        active, sub, result = STATES[status["state"]]
        props.update(ActiveState=active, SubState=sub, Result=result, MainPID=str(status.get("pid") or 0),
                     SupervisorState=status["state"], SupervisorDescription=str(status.get("description", "")))
        props["UnitFileState"] = "disabled" if section.get("autostart", "true").lower() == "false" else "enabled"
        props["ExecMainStatus"] = _exit_status(status)
    command = section.get("command", "").replace("\\\n", " ")
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    env = parse_environment(section.get("environment", ""))
    props.update(FragmentPath=conf_path if section else "", User=section.get("user", "root"),
                 WorkingDirectory=section.get("directory", ""))
    return {
        "name": name,
        "found": found,
        "properties": props,
        "unit_file": {
            "fragment_path": conf_path if section else "",
            "drop_in_paths": [],
            "exec_start": [{"path": words[0], "argv": " ".join(words), "ignore_errors": False}] if words else [],
            "user": section.get("user", "root") if section else "",
            "group": "",
            "working_directory": section.get("directory", ""),
            "environment_names": list(env),
        },
        "environment": env,
        "log_file": section.get("stdout_logfile", ""),
        "error": error,
    }


def _exit_status(status: dict[str, Any]) -> str:
    m = re.search(r"exit status (\d+)", str(status.get("description", "")))
    return m.group(1) if m else ""


def program_of_pid(pid: int, program_pids: dict[int, str], parents: dict[int, int]) -> str:
    """The program a process belongs to: its own pid or an ancestor's is a program's main pid."""
    seen: set[int] = set()
    while pid and pid not in seen:
        if pid in program_pids:
            return program_pids[pid]
        seen.add(pid)
        pid = parents.get(pid, 0)
    return ""


def parse_ppid(status_text: Any) -> int:
    """PPid from /proc/<pid>/status (0 when absent)."""
    m = re.search(r"^PPid:\s*(\d+)", str(status_text or ""), re.MULTILINE)
    return int(m.group(1)) if m else 0
