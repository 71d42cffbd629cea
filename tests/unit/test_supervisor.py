"""supervisord's view of a program as the verify role reads a unit (plugins/module_utils/supervisor.py),
and the diagnosis' wording for a supervisord program."""

from __future__ import annotations

from ansible_collections.cosyvoice.deploy.plugins.filter.diagnosis import cosyvoice_diagnose
from ansible_collections.cosyvoice.deploy.plugins.module_utils.supervisor import (
    parse_environment, parse_ppid, parse_status, program_of_pid, program_state, read_program)

STATUS = """\
cosyvoice                        RUNNING   pid 812, uptime 0:03:10
cosyvoice-watchdog               STOPPED   Dec 03 03:01 AM
other                            BACKOFF   Exited too quickly (process log may have details)
broken                           FATAL     Exited too quickly (process log may have details)
nope: ERROR (no such process)
"""

CONF = """\
; managed
[program:cosyvoice]
command=/opt/cosyvoice/venv/bin/python -m cosyvoice_launcher --host 0.0.0.0 --port 6006 ; comment
directory=/opt/cosyvoice/src
user=cosyvoice
autostart=true
stdout_logfile=/var/log/cosyvoice/cosyvoice.log
environment=PYTHONPATH="/opt/a:/opt/b",HF_TOKEN="s3cret",PCT="100%%"
"""


def test_status_lines_become_states_and_pids():
    st = parse_status(STATUS)
    assert st["cosyvoice"] == {"state": "RUNNING", "description": "pid 812, uptime 0:03:10", "pid": 812}
    assert st["cosyvoice-watchdog"]["state"] == "STOPPED" and st["cosyvoice-watchdog"]["pid"] == 0
    assert st["broken"]["state"] == "FATAL"
    assert "nope" not in st and "nope:" not in st


def test_program_section_and_environment():
    section = read_program(CONF, "cosyvoice")
    assert section["user"] == "cosyvoice"
    assert section["command"].endswith("--port 6006")
    assert read_program(CONF, "missing") == {}
    env = parse_environment(section["environment"])
    assert env["PYTHONPATH"] == "/opt/a:/opt/b" and env["HF_TOKEN"] == "********"


def test_a_program_reads_like_a_systemd_unit():
    st = parse_status(STATUS)
    unit = program_state("cosyvoice", st["cosyvoice"], read_program(CONF, "cosyvoice"), "/etc/supervisor/conf.d/c.conf")
    props = unit["properties"]
    assert unit["found"] and (props["ActiveState"], props["SubState"], props["MainPID"]) == ("active", "running", "812")
    assert props["UnitFileState"] == "enabled" and props["SupervisorState"] == "RUNNING"
    assert unit["unit_file"]["fragment_path"] == "/etc/supervisor/conf.d/c.conf"
    assert unit["unit_file"]["exec_start"][0]["argv"].endswith("--host 0.0.0.0 --port 6006")
    assert unit["log_file"] == "/var/log/cosyvoice/cosyvoice.log"
    crashed = program_state("broken", st["broken"], {}, "")
    assert crashed["properties"]["ActiveState"] == "failed"
    missing = program_state("cosyvoice", None, {}, "", "supervisord does not answer")
    assert not missing["found"] and missing["properties"]["LoadState"] == "not-found"


def test_listener_pids_map_to_programs_through_their_parents():
    assert program_of_pid(900, {812: "cosyvoice"}, {900: 812, 812: 1}) == "cosyvoice"
    assert program_of_pid(77, {812: "cosyvoice"}, {77: 1}) == ""
    assert parse_ppid("Name:\tpython\nPPid:\t812\n") == 812


def _evidence(state: str, listeners: list[dict]) -> dict:
    st = parse_status(f"cosyvoice   {state}   pid 812, uptime 0:00:09" if state == "RUNNING" else f"cosyvoice   {state}   x")
    unit = program_state("cosyvoice", st["cosyvoice"], read_program(CONF, "cosyvoice"), "/etc/supervisor/conf.d/c.conf")
    return {
        "host": "h",
        "endpoint": {"exposure": "direct", "backend_port": 6006, "bind_address": "0.0.0.0",
                     "public_ports": [{"port": 6006, "proto": "tcp", "purpose": "app"}],
                     "public_address": "10.0.0.5", "url": "http://10.0.0.5:6006/"},
        "service": {"unit": "cosyvoice", "properties": unit["properties"], "unit_file": unit["unit_file"],
                    "journal": ["Traceback", "ERROR: boom"]},
        "health": {"url": "http://127.0.0.1:6006/healthz", "status": -1, "outcome": "refused", "msg": "refused"},
        "listeners": listeners, "pid_units": {"812": "cosyvoice"} if listeners else {},
        "expected": {"app_unit": "cosyvoice", "manager": "supervisord", "app_user": "cosyvoice"},
    }


def test_a_stopped_program_is_diagnosed_with_supervisorctl_commands():
    d = cosyvoice_diagnose(_evidence("STOPPED", []))
    assert d["layer"] == "service"
    assert "supervisorctl start cosyvoice" in d["fix"] and "systemctl" not in d["fix"]
    assert "cosyvoice.service" not in d["message"]


def test_a_crashed_program_names_its_log():
    d = cosyvoice_diagnose(_evidence("FATAL", []))
    assert d["layer"] == "service"
    assert "supervisorctl tail" in d["fix"] and "journalctl" not in d["fix"]
    assert "ERROR: boom" in d["cause"]
