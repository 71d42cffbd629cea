"""scripts/failure-digest: the end of `make test`'s output names what failed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "failure-digest"

LOG = """\
TASK [cosyvoice : Start the service] *******
fatal: [cv-x]: FAILED! => {"changed": false, "msg": "Unable to start service cosyvoice"}
...ignoring
TASK [cosyvoice.deploy.cosyvoice : Install system packages
  (apt)] ***
fatal: [cv-x]: FAILED! =>
    changed: false
    module_stdout: ''
    msg: 'Module result deserialization failed'
    rc: 137

PLAY RECAP ***
FAILED - RETRYING: [localhost]: Wait for instance(s) creation to complete (299 retries left).
TASK [verify : Probe the port] *******
ok: [cv-x]
INFO     Running supervisord > verify
molecule/supervisord/tests/test_supervisord.py::test_kill_9 FAILED
>       assert took < 40
E       AssertionError: hung app served again only after 52 s
E       assert 52 < 40
=========================== short test summary info ============================
FAILED molecule/supervisord/tests/test_supervisord.py::test_kill_9 - AssertionError: hung app served again only after 52 s
CRITICAL Scenario 'supervisord' failed
"""


def run(*args: str, cwd: Path) -> str:
    proc = subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, capture_output=True,
                          text=True, check=True)
    return proc.stdout


def test_names_the_failed_test_its_assertion_and_the_failed_task(tmp_path: Path) -> None:
    log = tmp_path / "supervisord.log"
    log.write_text(LOG)
    out = run(str(log), cwd=tmp_path)
    assert "=== supervisord: what failed" in out
    assert "FAILED molecule/supervisord/tests/test_supervisord.py::test_kill_9 - AssertionError" in out
    assert "E       AssertionError: hung app served again only after 52 s" in out
    assert "[cosyvoice : Start the service] fatal: [cv-x]" in out
    assert ("[cosyvoice.deploy.cosyvoice : Install system packages] fatal: [cv-x]: FAILED! => "
            "msg: 'Module result deserialization failed' rc: 137") in out
    assert "module_stdout" not in out
    assert "CRITICAL Scenario 'supervisord' failed" in out
    assert "ok: [cv-x]" not in out and "RETRYING" not in out


def test_molecule_colours_and_step_bars_are_taken_off(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("".join(f"  \x1b[2m│\x1b[0m \x1b[0;31m{line}\x1b[0m\n" for line in LOG.splitlines()))
    out = run(str(log), cwd=tmp_path)
    assert "  FAILED molecule/supervisord/tests/test_supervisord.py::test_kill_9 - AssertionError" in out
    assert "\x1b" not in out and "│" not in out


def test_reads_the_failed_list_run_scenarios_writes_and_is_quiet_without_one(tmp_path: Path) -> None:
    assert run(cwd=tmp_path) == ""
    logs = tmp_path / ".cache" / "molecule-logs"
    logs.mkdir(parents=True)
    (logs / "drift.log").write_text(LOG)
    (logs / "failed").write_text(" drift proxy\n")
    out = run(cwd=tmp_path)
    assert "=== drift: what failed" in out and "test_kill_9" in out
    assert "=== proxy: what failed" in out and "(no log)" in out


def test_a_long_log_keeps_the_last_lines_cut_to_width(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("".join(f"fatal: [h]: FAILED! => {{\"msg\": \"{i} {'x' * 600}\"}}\n" for i in range(40)))
    lines = [line for line in run(str(log), cwd=tmp_path).splitlines() if "fatal" in line]
    assert len(lines) == 14
    assert '"msg": "39 ' in lines[-1]
    assert all(len(line) <= 402 for line in lines)
