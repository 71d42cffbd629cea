#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cosyvoice-deploy maintainers
# Apache License 2.0
"""Read-only evidence about a service on the host: systemd, listeners, local health, journal."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: host_probe
short_description: Read a service's state on the host (systemd units, listeners, local health, journal)
description:
  - Collects, in one module run and without changing anything, what the C(cosyvoice.deploy.verify) role
    needs to diagnose why users cannot reach a service.
  - The properties of each systemd unit in O(units) (C(systemctl show)), its state and where its definition
    comes from (fragment, drop-ins, C(ExecStart), environment, user, group, working directory).
  - The TCP listeners (C(ss -H -t -l -n -p)), parsed, with the systemd unit of every process holding one
    (from C(/proc/<pid>/cgroup)).
  - A GET of O(health_url) on the host itself, without any proxy, with the outcome named explicitly
    (V(ok), V(http_error), V(refused), V(timeout), V(unreachable), V(error)). While the first unit is still
    starting (C(activating) in a start substate) the request is repeated until it succeeds or
    O(startup_timeout) passes; a stopped or crash-looping unit is probed once.
  - The last O(journal_lines) lines of the first unit's journal when it is not active.
  - Run it as root (C(become)), otherwise C(ss) shows no processes and C(/proc/<pid>/cgroup) of other
    users' processes cannot be read.
version_added: "1.1.0"
options:
  units:
    description:
      - systemd units to read. The first one is the application's (startup wait, journal).
    type: list
    elements: str
    default: []
  health_url:
    description:
      - URL of the health endpoint as seen from the host itself (e.g. V(http://127.0.0.1:7860/healthz)).
      - Empty skips the request (RV(health) is then empty).
    type: str
    default: ""
  http_timeout:
    description:
      - Seconds for one health request (connect and read, each).
    type: float
    default: 15
  connect_timeout:
    description:
      - Seconds to wait for the health request's TCP connection alone; a connection that gets no
        answer (a packet filter that drops) then costs this, not O(http_timeout).
      - V(0) leaves connecting to O(http_timeout) too.
    type: float
    default: 0
    version_added: "1.8.0"
  startup_timeout:
    description:
      - Seconds to keep asking the health endpoint while the first unit of O(units) is starting.
      - V(0) asks once.
    type: int
    default: 120
  journal_lines:
    description:
      - Journal lines of the first unit to return when it is not active. V(0) reads no journal.
    type: int
    default: 20
  ports:
    description:
      - TCP ports whose holders matter; RV(port_holders) lists who holds each.
    type: list
    elements: int
    default: []
  manager:
    description:
      - What supervises O(units). V(systemd) reads units with C(systemctl show) and C(journalctl).
      - V(supervisord) treats O(units) as supervisord program names (hosts without systemd, e.g. GPU
        container platforms) - C(supervisorctl status), the program's section in O(supervisor_conf_dir),
        the tail of its log file - and returns them in the same shape as a unit (ActiveState, SubState,
        MainPID, UnitFileState from C(autostart), FragmentPath is the program's config file; the
        supervisord state itself is in C(SupervisorState)). A program counts as starting while its
        process is alive, so the health request is repeated until O(startup_timeout) as for a
        starting unit.
    type: str
    choices: [systemd, supervisord]
    default: systemd
  supervisor_conf_dir:
    description:
      - Where supervisord's program files are (C(*.conf), C(*.ini)). Only with O(manager=supervisord).
    type: path
    default: /etc/supervisor/conf.d
  firewall:
    description:
      - Also read the host's packet filter in this module run, as M(cosyvoice.deploy.os_firewall_facts) does
        (same readers, same answer), and return it as RV(firewall). Omitted - not read.
      - One module run instead of two for the C(cosyvoice.deploy.verify) role, which needs both.
    type: dict
    version_added: "1.10.0"
    suboptions:
      ports:
        description: The ports to judge, as O(cosyvoice.deploy.os_firewall_facts#module:ports).
        type: list
        elements: dict
        default: []
        suboptions:
          port:
            description: Port number.
            type: int
            required: true
          proto:
            description: Protocol.
            type: str
            choices: [tcp, udp]
            default: tcp
          purpose:
            description: What the port is for (only shown).
            type: str
      ssh_ports:
        description: Ports never offered for removal, as O(cosyvoice.deploy.os_firewall_facts#module:ssh_ports).
        type: list
        elements: int
        default: [22]
  certificate:
    description:
      - Also return the text of this PEM certificate file (RV(certificate)), e.g. the self-signed certificate
        a client must trust, so that it need not be fetched in another run. Only a file of certificates is
        returned - one holding a private key, or anything that is not PEM certificates, is not (an error is
        returned instead). At most 1 MiB. Omitted - not read.
    type: path
    version_added: "1.11.0"
extends_documentation_fragment:
  - cosyvoice.deploy.read_only
notes:
  - Values of environment variables whose names look secret (C(*PASS*), C(*TOKEN*), C(*KEY*), C(*SECRET*),
    ...) are returned as C(********).
requirements:
  - systemd (systemctl, journalctl) or supervisord (supervisorctl), iproute2 (ss) on the host
seealso:
  - name: verify role
    description: The role that judges this evidence (filter C(cosyvoice.deploy.cosyvoice_diagnose)).
    link: https://github.com/cosyvoice-deploy/cosyvoice-deploy/tree/main/roles/verify
"""

EXAMPLES = r"""
- name: Read the service's state on the host
  cosyvoice.deploy.host_probe:
    units: [cosyvoice.service, nginx.service]
    health_url: http://127.0.0.1:7860/healthz
    ports: [7860, 443]
  become: true
  register: probe

- name: Show who holds the app's port and how the health request ended
  ansible.builtin.debug:
    msg: "{{ probe.port_holders[0].holders }} / {{ probe.health.outcome }}"
"""

RETURN = r"""
units:
  description: One entry per unit of O(units), keyed by the name as given.
  returned: always
  type: dict
  contains:
    name:
      description: The unit's name as given.
      type: str
    found:
      description: The unit exists (C(LoadState) is not C(not-found)).
      type: bool
    properties:
      description:
        - C(systemctl show) values as strings - LoadState, ActiveState, SubState, Result, UnitFileState,
          MainPID, NRestarts, ExecMainStatus, ExecMainCode, FragmentPath, DropInPaths, ExecStart (one line per
          command), User, Group, WorkingDirectory. C(Environment) only appears under RV(units.environment).
      type: dict
      sample: {"LoadState": "loaded", "ActiveState": "active", "SubState": "running", "MainPID": "812"}
    unit_file:
      description: Where the unit's definition comes from and what it runs (no environment values).
      type: dict
      sample:
        fragment_path: /etc/systemd/system/cosyvoice.service
        drop_in_paths: [/etc/systemd/system/cosyvoice.service.d/override.conf]
        exec_start:
          - path: /opt/cosyvoice/venv/bin/python
            argv: /opt/cosyvoice/venv/bin/python -m cosyvoice_launcher --host 0.0.0.0 --port 7860
            ignore_errors: false
        user: cosyvoice
        group: cosyvoice
        working_directory: /opt/cosyvoice/src
        environment_names: [PYTHONPATH, HF_HOME]
    environment:
      description: The unit's C(Environment=) as a dict; values of secret-looking names are C(********).
      type: dict
    error:
      description: Why the unit could not be read (no systemctl, systemctl failed); empty otherwise.
      type: str
health:
  description: The GET of O(health_url) on the host; empty when O(health_url) is empty.
  returned: always
  type: dict
  contains:
    url:
      description: The URL asked.
      type: str
    outcome:
      description:
        - V(ok) (2xx), V(http_error) (another status), V(refused) (ECONNREFUSED), V(timeout) (connect or read
          timeout), V(unreachable) (no route to the host or network), V(error) (anything else, see RV(health.msg)).
      type: str
    status:
      description: The HTTP status; V(-1) when no HTTP answer came.
      type: int
    ok:
      description: The status is 200.
      type: bool
    msg:
      description: The HTTP reason, or the error.
      type: str
    timeout_phase:
      description:
        - For V(timeout) - V(connect) (no answer to the connection request - a packet filter that drops
          looks like this) or V(read) (the connection was accepted but no response came - a hung process).
      type: str
    elapsed:
      description: Seconds the last request took.
      type: float
    attempts:
      description: Requests made (more than one while the unit was starting).
      type: int
    waited:
      description: Seconds spent waiting for a starting unit.
      type: float
  sample: {"url": "http://127.0.0.1:7860/healthz", "outcome": "refused", "status": -1, "ok": false,
           "msg": "<urlopen error [Errno 111] Connection refused>", "timeout_phase": "", "elapsed": 0.001,
           "attempts": 1, "waited": 0.0}
listeners:
  description:
    - TCP listening sockets from C(ss -H -t -l -n -p), parsed (the shape of the C(cosyvoice.deploy.ss_listeners)
      filter) - netid, state, local, address, interface, port, peer, processes [{name, pid, fd}], family,
      serves, wildcard, loopback, scope (any, interface, address, loopback).
  returned: always
  type: list
  elements: dict
ss_error:
  description: Why C(ss) could not be run (not installed, failed); empty when it ran.
  returned: always
  type: str
pid_units:
  description: The systemd unit or scope of every process holding a listener ('' when in none), by pid.
  returned: always
  type: dict
  sample: {"812": "cosyvoice.service", "300": "ssh.service"}
port_holders:
  description: For each port of O(ports), who holds it.
  returned: always
  type: list
  elements: dict
  sample: [{"port": 7860, "listening": true, "addresses": ["0.0.0.0:7860"],
            "holders": [{"name": "python", "pid": 812, "unit": "cosyvoice.service"}]}]
journal:
  description: The first unit's last journal lines (message text only) when it is not active; [] otherwise.
  returned: always
  type: list
  elements: str
firewall:
  description:
    - The host firewall and each port's verdict, with O(firewall) - what M(cosyvoice.deploy.os_firewall_facts)
      returns as the fact C(os_firewall) (backend, active, default_incoming, ports, foreign_blocks, posture,
      managers, sources).
  returned: when O(firewall) is given
  type: dict
  sample: {backend: ufw, active: true, default_incoming: deny, allowed_ports: [{port: 7860, proto: tcp}]}
certificate:
  description:
    - With O(certificate) - C(path), C(content) (the PEM text; null when the file is missing, unreadable or not
      only certificates) and C(error) (why there is no content; empty when there is).
  returned: when O(certificate) is given
  type: dict
  sample: {path: /etc/nginx/ssl/cosyvoice/cosyvoice.crt, content: "-----BEGIN CERTIFICATE-----...", error: ""}
"""

import glob
import os
import time
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.cosyvoice.deploy.plugins.module_utils import firewall_host, netshape
from ansible_collections.cosyvoice.deploy.plugins.module_utils.health import OK, probe_url
from ansible_collections.cosyvoice.deploy.plugins.module_utils.listeners import (
    cgroup_unit, listener_pids, port_holders, ss_listeners_tolerant)
from ansible_collections.cosyvoice.deploy.plugins.module_utils.supervisor import (
    parse_ppid, parse_status, program_of_pid, program_state, read_program)
from ansible_collections.cosyvoice.deploy.plugins.module_utils.systemd import (
    PROPERTIES, is_starting, parse_show, unit_state)

STARTUP_POLL_S = 3
SUPERVISOR_STARTING_MAX_S = 30
PROC = "/proc"
ARGUMENT_SPEC = {
    "units": {"type": "list", "elements": "str", "default": []},
    "health_url": {"type": "str", "default": ""},
    "http_timeout": {"type": "float", "default": 15},
    "connect_timeout": {"type": "float", "default": 0},
    "startup_timeout": {"type": "int", "default": 120},
    "journal_lines": {"type": "int", "default": 20},
    "ports": {"type": "list", "elements": "int", "default": []},
    "manager": {"type": "str", "choices": ["systemd", "supervisord"], "default": "systemd"},
    "supervisor_conf_dir": {"type": "path", "default": "/etc/supervisor/conf.d"},
    "firewall": {
        "type": "dict",
        "options": {"ports": netshape.PORTS_SPEC, "ssh_ports": firewall_host.SSH_PORTS_SPEC},
    },
    "certificate": {"type": "path"},
}
CERTIFICATE_MAX_BYTES = 1 << 20


def show(module: Any, systemctl: str | None, unit: str, properties: tuple[str, ...] = PROPERTIES) -> tuple[str, str]:
    """(systemctl show output, error)."""
    if not systemctl:
        return "", "systemctl not found: not a systemd host"
    rc, out, err = module.run_command([systemctl, "show", "--property=" + ",".join(properties), "--", unit])
    if rc != 0:
        return "", f"systemctl show {unit} exited {rc}: {(err or out).strip()}"
    return out, ""


def read_unit(module: Any, systemctl: str | None, unit: str) -> dict[str, Any]:
    out, error = show(module, systemctl, unit)
    return unit_state(unit, out, error)


def unit_starting(module: Any, systemctl: str | None, unit: str) -> bool:
    out, _ = show(module, systemctl, unit, ("ActiveState", "SubState"))
    return is_starting(parse_show(out))


def wait_health(module: Any, systemctl: str | None, app_unit: str | None) -> dict[str, Any]:
    """Ask the health endpoint; ask again every few seconds while the app's unit is starting."""
    return wait_health_until(module, lambda: bool(app_unit and unit_starting(module, systemctl, app_unit)))


def wait_health_until(module: Any, starting: Any) -> dict[str, Any]:
    """Ask the health endpoint; ask again every few seconds while starting() says the app is starting."""
    params = module.params
    if not params["health_url"]:
        return {}
    start = time.monotonic()
    deadline = start + max(params["startup_timeout"], 0)
    attempts, asked = 0, start
    while True:
        attempts, asked = attempts + 1, time.monotonic()
        answer = probe_url(params["health_url"], params["http_timeout"], connect_timeout=params["connect_timeout"])
        if answer["outcome"] == OK or time.monotonic() >= deadline:
            break
        if not starting():
            break
        time.sleep(STARTUP_POLL_S)
    answer.update(attempts=attempts, waited=round(asked - start, 3))
    return answer


def read_listeners(module: Any) -> tuple[list[dict[str, Any]], str]:
    """(parsed listeners, error running ss). Lines ss prints that are not listeners become warnings."""
    ss = module.get_bin_path("ss")
    if not ss:
        return [], "ss not found (PATH: " + os.environ.get("PATH", "") + ")"
    rc, out, err = module.run_command([ss, "-H", "-t", "-l", "-n", "-p"])
    if rc != 0:
        return [], f"ss exited {rc}: {(err or out).strip()}"
    listeners, errors = ss_listeners_tolerant(out)
    for error in errors:
        module.warn(f"ignored a line of ss output: {error}")
    return listeners, ""


def read_pid_units(pids: list[int]) -> dict[str, str]:
    """{'<pid>': unit} from /proc/<pid>/cgroup; pids that are gone (or say nothing) are left out."""
    units = {}
    for pid in pids:
        try:
            with open(os.path.join(PROC, str(pid), "cgroup"), encoding="utf-8") as handle:
                unit = cgroup_unit(handle.read())
        except OSError:
            continue
        if unit is not None:
            units[str(pid)] = unit
    return units


def read_journal(module: Any, unit: str, lines: int) -> list[str]:
    journalctl = module.get_bin_path("journalctl")
    if not journalctl or lines <= 0:
        return []
    argv = [journalctl, "--unit", unit, "--lines", str(lines), "--no-pager", "--output", "cat"]
    _, out, err = module.run_command(argv)
    return [line for line in (out or err or "").splitlines() if line.strip()]


class Supervisor:
    """supervisorctl, read-only: the programs' status, their config sections, their log tails."""

    def __init__(self, module: Any) -> None:
        self.module = module
        self.ctl = module.get_bin_path("supervisorctl")
        self.conf_dir = module.params["supervisor_conf_dir"]

    def status(self) -> tuple[dict[str, dict[str, Any]], str]:
        """({program: status} of every program, why supervisord could not be asked)."""
        if not self.ctl:
            return {}, "supervisorctl not found: supervisord is not installed"
        rc, out, err = self.module.run_command([self.ctl, "status"])
        programs = parse_status(out)
        # rc 3 = some program is not running; 4 = no such process; anything else with no
        # parsable line is supervisord itself not answering.
        if not programs and rc not in (0, 3):
            return {}, f"supervisord does not answer (supervisorctl status exited {rc}: {(err or out).strip()})"
        return programs, ""

    def section(self, program: str) -> tuple[dict[str, str], str]:
        for path in sorted(glob.glob(os.path.join(self.conf_dir, "*.conf")) + glob.glob(os.path.join(self.conf_dir, "*.ini"))):
            try:
                with open(path, encoding="utf-8") as handle:
                    found = read_program(handle.read(), program)
            except OSError:
                continue
            if found:
                return found, path
        return {}, ""

    def read(self, program: str) -> dict[str, Any]:
        programs, error = self.status()
        section, path = self.section(program)
        return program_state(program, programs.get(program) if not error else None, section, path, error)

    def starting(self, program: str) -> bool:
        programs, _ = self.status()
        return programs.get(program, {}).get("state") in ("STARTING", "RUNNING", "BACKOFF")

    def program_pids(self) -> dict[int, str]:
        programs, _ = self.status()
        return {s["pid"]: name for name, s in programs.items() if s.get("pid")}


def read_pid_programs(pids: list[int], program_pids: dict[int, str]) -> dict[str, str]:
    """{'<pid>': program} for the listener pids that belong to a supervisord program."""
    parents: dict[int, int] = {}
    for pid in list(pids):
        current = pid
        for _ in range(32):  # walk up to the program's process (wrappers, workers)
            if current in parents or current <= 1:
                break
            try:
                with open(os.path.join(PROC, str(current), "status"), encoding="utf-8") as handle:
                    parents[current] = parse_ppid(handle.read())
            except OSError:
                break
            current = parents[current]
    units = {}
    for pid in pids:
        program = program_of_pid(pid, program_pids, parents)
        if program:
            units[str(pid)] = program
    return units


def read_log_tail(path: str, lines: int) -> list[str]:
    if not path or lines <= 0 or path.upper() in ("NONE", "AUTO", "SYSLOG"):
        return []
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 64 * 1024))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip()][-lines:]


def probe_supervised(module: Any) -> dict[str, Any]:
    """probe() for supervisord programs."""
    params = module.params
    sv = Supervisor(module)
    app = params["units"][0] if params["units"] else None
    health = wait_health_until(module, lambda: bool(app and sv.starting(app)))
    # supervisord says STARTING until the program has lived `startsecs`, even when it
    # already answers: wait that out (bounded) so a fresh start is not reported as one.
    deadline = time.monotonic() + SUPERVISOR_STARTING_MAX_S
    while app and time.monotonic() < deadline and sv.status()[0].get(app, {}).get("state") == "STARTING":
        time.sleep(1)
    units = {name: sv.read(name) for name in params["units"]}
    listeners, ss_error = read_listeners(module)
    pid_units = read_pid_programs(listener_pids(listeners), sv.program_pids())
    journal: list[str] = []
    if app and units[app]["properties"].get("ActiveState") != "active":
        journal = read_log_tail(units[app]["log_file"], params["journal_lines"])
    return {
        "changed": False, "units": units, "health": health, "listeners": listeners, "ss_error": ss_error,
        "pid_units": pid_units, "port_holders": port_holders(listeners, params["ports"], pid_units),
        "journal": journal,
    }


def probe(module: Any) -> dict[str, Any]:
    params = module.params
    systemctl = module.get_bin_path("systemctl")
    app_unit = params["units"][0] if params["units"] else None
    health = wait_health(module, systemctl, app_unit)
    units = {unit: read_unit(module, systemctl, unit) for unit in params["units"]}
    listeners, ss_error = read_listeners(module)
    pid_units = read_pid_units(listener_pids(listeners))
    journal: list[str] = []
    if app_unit and units[app_unit]["properties"].get("ActiveState") != "active":
        journal = read_journal(module, app_unit, params["journal_lines"])
    return {
        "changed": False, "units": units, "health": health, "listeners": listeners, "ss_error": ss_error,
        "pid_units": pid_units, "port_holders": port_holders(listeners, params["ports"], pid_units),
        "journal": journal,
    }


def read_firewall(module: Any) -> dict[str, Any]:
    """The fact os_firewall for O(firewall) (os_firewall_facts' readers)."""
    wanted = module.params["firewall"]
    facts, _probes, _connection = firewall_host.read_state(firewall_host.Host(module), wanted["ports"],
                                                          wanted["ssh_ports"])
    return facts


def read_certificate(path: str) -> dict[str, Any]:
    """O(certificate): the PEM text of a file that holds certificates and nothing else."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(CERTIFICATE_MAX_BYTES + 1)
    except FileNotFoundError:
        return {"path": path, "content": None, "error": "no such file"}
    except OSError as err:
        return {"path": path, "content": None, "error": f"cannot read it: {err.strerror or err}"}
    if len(data) > CERTIFICATE_MAX_BYTES:
        return {"path": path, "content": None, "error": "larger than 1 MiB: not a certificate file"}
    text = data.decode("ascii", errors="replace")
    begins = [line.strip() for line in text.splitlines() if line.startswith("-----BEGIN ")]
    if not begins or any(line != "-----BEGIN CERTIFICATE-----" for line in begins):
        return {"path": path, "content": None, "error": "not only PEM certificates (a key, or no PEM at all): not returned"}
    return {"path": path, "content": text, "error": ""}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    firewall = module.params["firewall"]
    bad = firewall_host.bad_ports(firewall["ports"]) if firewall else []
    if bad:
        module.fail_json(msg=f"firewall.ports: {bad} are not port numbers (1-65535).")
    result = probe_supervised(module) if module.params["manager"] == "supervisord" else probe(module)
    if firewall is not None:
        result["firewall"] = read_firewall(module)
    if module.params["certificate"]:
        result["certificate"] = read_certificate(module.params["certificate"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
