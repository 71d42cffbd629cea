# -*- coding: utf-8 -*-
# Copyright: cosyvoice-deploy maintainers
# Apache License 2.0
"""`systemctl show` output as data, and the unit states the probe and the diagnosis share.

Pure functions (stdlib only): the host_probe module runs them on the host, the
diagnosis filter and the tests on the controller. Samples (systemd 252, Debian 12):
tests/unit/data/systemctl/.

    systemctl show --property=LoadState,...,ExecStart,Environment -- cosyvoice.service

prints one `Key=value` line per property; a unit with several commands prints
one `ExecStart={ path=... ; argv[]=... ; ... }` line per command; a unit that
does not exist still answers (LoadState=not-found, rc 0).
"""

from __future__ import annotations

import re
import shlex
from typing import Any

# What the verify role reads about a unit: its state (the diagnosis) and, for
# drift, where its definition comes from and what it runs.
STATE_PROPERTIES = (
    "LoadState", "ActiveState", "SubState", "Result", "UnitFileState", "MainPID", "NRestarts",
    "ExecMainStatus", "ExecMainCode",
)
DEFINITION_PROPERTIES = (
    "FragmentPath", "DropInPaths", "ExecStart", "Environment", "User", "Group", "WorkingDirectory",
)
PROPERTIES = STATE_PROPERTIES + DEFINITION_PROPERTIES

# UnitFileState values that start the unit at boot (or that make "enable" meaningless).
ENABLED_STATES = ("enabled", "enabled-runtime", "static", "indirect", "generated", "transient", "alias", "linked")
# LoadState values of a unit that does not exist.
NOT_FOUND_STATES = ("not-found", "")
# SubStates of an `activating` unit that is really starting (not waiting to restart after a crash).
START_SUBSTATES = ("start-pre", "start", "start-post")
# Properties that may appear several times (one line per command).
_MULTI = ("ExecStart", "ExecStartPre", "ExecStartPost", "ExecStop", "ExecStopPost", "ExecReload")
_EXEC = re.compile(r"^\{ path=(?P<path>.*?) ; argv\[\]=(?P<argv>.*?) ; ignore_errors=(?P<ignore>\w+)\b")
# Environment names whose values are not returned (tokens, passwords, keys).
SECRET_NAME = re.compile(r"(?i)(pass|secret|token|key|credential|auth|cookie|session)")
REDACTED = "********"


def unit_name(name: Any) -> str:
    """'cosyvoice' -> 'cosyvoice.service'; names with a unit suffix stay as they are."""
    text = str(name or "")
    return text if text.endswith((".service", ".scope")) else f"{text}.service"


def _as_text(text: Any) -> str:
    if isinstance(text, (list, tuple)):
        return "\n".join(str(x) for x in text)
    return str(text or "")


def parse_show(text: Any) -> dict[str, str]:
    """`systemctl show UNIT -p A,B` output -> {"A": "...", "B": "..."}.

    Exec* properties that appear several times are joined with newlines."""
    props: dict[str, str] = {}
    for line in _as_text(text).splitlines():
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            continue
        if key in _MULTI and props.get(key):
            props[key] += "\n" + value
        else:
            props[key] = value
    return props


def parse_show_units(text: Any) -> list[dict[str, str]]:
    """`systemctl show -p ... UNIT1 UNIT2` output (blocks separated by blank lines) -> one dict per unit."""
    blocks = re.split(r"\n\s*\n", _as_text(text).strip())
    return [parse_show(b) for b in blocks if b.strip()]


def split_words(value: Any) -> list[str]:
    """A systemd list property (DropInPaths, Environment): words, shell-quoted when they contain spaces."""
    text = str(value or "").strip()
    try:
        return shlex.split(text)
    except ValueError:  # unbalanced quotes: plain words
        return text.split()


def parse_exec(value: Any) -> list[dict[str, Any]]:
    """ExecStart's value(s) -> [{path, argv, ignore_errors}] (argv: the command line, words joined by spaces)."""
    commands = []
    for line in str(value or "").splitlines():
        m = _EXEC.match(line.strip())
        if m:
            commands.append({"path": m.group("path"), "argv": m.group("argv"),
                             "ignore_errors": m.group("ignore") == "yes"})
    return commands


def parse_environment(value: Any, redact: bool = True) -> dict[str, str]:
    """Environment's value -> {NAME: value}; values of secret-looking names are redacted."""
    env: dict[str, str] = {}
    for word in split_words(value):
        name, sep, val = word.partition("=")
        if sep and name:
            env[name] = REDACTED if redact and SECRET_NAME.search(name) else val
    return env


def is_found(props: dict[str, Any]) -> bool:
    """The unit exists (state collected and LoadState not not-found)."""
    return bool(props) and props.get("LoadState", "loaded") not in NOT_FOUND_STATES


def is_starting(props: dict[str, Any]) -> bool:
    """The unit is starting up (activating in a start substate), not waiting to restart after a crash."""
    return props.get("ActiveState") == "activating" and props.get("SubState") in START_SUBSTATES


def unit_file(props: dict[str, Any]) -> dict[str, Any]:
    """Where a unit's definition comes from and what it runs (for drift checks); no environment values."""
    return {
        "fragment_path": props.get("FragmentPath", ""),
        "drop_in_paths": split_words(props.get("DropInPaths", "")),
        "exec_start": parse_exec(props.get("ExecStart", "")),
        "user": props.get("User", ""),
        "group": props.get("Group", ""),
        "working_directory": props.get("WorkingDirectory", ""),
        "environment_names": list(parse_environment(props.get("Environment", ""))),
    }


def unit_state(name: str, text: Any, error: str = "") -> dict[str, Any]:
    """`systemctl show` output of one unit -> what the host_probe module returns for it."""
    props = parse_show(text)
    env = parse_environment(props.get("Environment", ""))
    return {
        "name": name,
        "found": is_found(props),
        # Environment only appears redacted, under `environment`.
        "properties": {k: v for k, v in props.items() if k != "Environment"},
        "unit_file": unit_file(props),
        "environment": env,
        "error": error,
    }
