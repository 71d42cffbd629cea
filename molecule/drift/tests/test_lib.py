"""Unit tests of tests/lib/drift.py on real ansible-playbook output (data/) and on loopback.

No container needed: `pytest molecule/drift/tests/test_lib.py`; molecule's verify step runs
them too, so a parser regression shows up as itself, not as a confusing drift failure.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tests.lib.drift import Run, checksums, parse_results, scan, state_diff, ufw_rules  # noqa: E402

DATA = Path(__file__).with_name("data")


def _run(name: str, rc: int = 0) -> Run:
    text = (DATA / name).read_text(encoding="utf-8")
    return Run.of(subprocess.CompletedProcess(["ansible-playbook"], rc, text, ""), 1.0)


def test_changed_tasks_with_plays_handlers_and_items():
    run = _run("check-diff-excerpt.txt")
    tasks = run.changed_tasks()
    assert list(tasks) == [
        "cosyvoice : Template the systemd unit (verified by systemd-analyze before it replaces the live one)",
        "cosyvoice : Restart cosyvoice",
        "cosyvoice : Enable and start the service (waits until it reports ready)",
        "os_firewall : Ufw | Allow the service ports from the allowed sources",
    ]
    assert tasks["os_firewall : Ufw | Allow the service ports from the allowed sources"] == [
        "changed: [cv-drift] => (item=443/tcp from 0.0.0.0/0)",
        "changed: [cv-drift] => (item=443/tcp from ::/0)",
    ]
    assert {r.play for r in run.changed()} == {"CosyVoice3 service", "Host firewall"}
    assert run.failures() == []


def test_diff_of_a_file():
    run = _run("check-diff-excerpt.txt")
    diff = run.diff("/etc/systemd/system/cosyvoice.service").splitlines()
    assert diff[0] == "--- before: /etc/systemd/system/cosyvoice.service"
    assert "-    --host 0.0.0.0 \\" in diff and "+    --port 7860 \\" in diff
    assert not any(line.startswith("changed:") for line in diff)
    assert run.diff("/etc/nginx/sites-available/cosyvoice.conf") == ""


def test_recap_and_plays():
    run = _run("check-diff-excerpt.txt")
    assert run.recap() == {"cv-drift": {"ok": 158, "changed": 11, "unreachable": 0, "failed": 0}}
    assert run.plays() == ["Test fixtures as inventory variables", "Preflight - validate all input before any change",
                           "CosyVoice3 service", "Host firewall"]


def test_failure_in_preflight():
    run = _run("bad-input-excerpt.txt", rc=2)
    [failure] = run.failures()
    assert failure.play == "Preflight - validate all input before any change"
    assert failure.task == "cosyvoice : Check auth users (names unique, passwords long enough)"
    assert failure.line == "fatal: [cv-drift]: FAILED!"
    assert run.recap()["cv-drift"]["changed"] == 0
    assert parse_results("") == []


def test_state_helpers():
    rules = ["22/tcp ALLOW IN Anywhere", "80/tcp ALLOW IN Anywhere"]
    before = {"checksums": "aa  /etc/a\nbb  /etc/b", "firewall": "\n".join(["Status: active", *rules])}
    after = {"checksums": "aa  /etc/a\ncc  /etc/b", "firewall": "\n".join(["Status: active", *reversed(rules)])}
    assert checksums(after) == {"/etc/a": "aa", "/etc/b": "cc"}
    assert ufw_rules(before) == ufw_rules(after)
    diff = state_diff(before, after)
    assert "## checksums" in diff and "-bb  /etc/b" in diff and "+cc  /etc/b" in diff
    assert state_diff(before, dict(before)) == ""


def test_scan_tells_open_from_refused_on_loopback():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with socket.socket() as probe:  # a port nothing listens on
            probe.bind(("127.0.0.1", 0))
            closed = probe.getsockname()[1]
        result = scan("127.0.0.1", [port, closed], timeout=1.0, window=2)
    assert result.open == [port]
    assert result.refused == [closed]
    assert result.filtered == [] and result.errors == {}
    assert result.seconds < 1.0
