"""cosyvoice.deploy.controller_files: text files written on the controller without a module run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from ansible.errors import AnsibleActionFail

from ansible_collections.cosyvoice.deploy.plugins.action.controller_files import write_files


def test_files_are_written_with_their_directory_then_left_alone(tmp_path: Path) -> None:
    report = tmp_path / "reports" / "gpu1" / "report.txt"
    ca = tmp_path / "reports" / "gpu1" / "server-ca.pem"
    assert write_files({str(report): "Result:   OK\n", str(ca): "PEM\n"}) == [str(report), str(ca)]
    assert report.read_text() == "Result:   OK\n" and oct(ca.stat().st_mode & 0o777) == "0o644"
    before = report.stat().st_mtime_ns
    os.utime(report, ns=(before - 10**9, before - 10**9))
    assert write_files({str(report): "Result:   OK\n"}) == []  # same text: not touched
    assert report.stat().st_mtime_ns == before - 10**9
    assert write_files({str(report): "Result:   FAIL\n"}) == [str(report)]
    assert report.read_text() == "Result:   FAIL\n"
    assert sorted(p.name for p in report.parent.iterdir()) == ["report.txt", "server-ca.pem"]  # no temp files left


def test_bad_input_fails_with_what_to_change(tmp_path: Path) -> None:
    with pytest.raises(AnsibleActionFail, match="is not an absolute path"):
        write_files({"reports/x": "text"})
    with pytest.raises(AnsibleActionFail, match="must be text"):
        write_files({str(tmp_path / "x"): {"a": 1}})
