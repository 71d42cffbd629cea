"""cosyvoice.deploy.python_env_state: the one read before the cosyvoice role builds its venv."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.cosyvoice.deploy.plugins.module_utils.python_env import uv_version
from ansible_collections.cosyvoice.deploy.plugins.modules import python_env_state as pes


def run(args: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    with patch_module_args(args), pytest.raises(SystemExit) as exit_:
        pes.main()
    return int(exit_.value.code or 0), json.loads(capsys.readouterr().out)


def fake_uv(path: Path, answer: str) -> Path:
    path.write_text(f"#!/bin/sh\necho '{answer}'\n")
    path.chmod(0o755)
    return path


def test_uv_version_is_read_from_uvs_own_answer() -> None:
    assert uv_version("uv 0.5.11 (c9bb5d4 2024-12-18)\n") == "0.5.11"
    assert uv_version("uv 0.5.11\n") == "0.5.11"
    assert uv_version("") == "" and uv_version("bash: uv: not found") == ""


def test_a_converged_environment_is_read_in_one_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_bytes(b"torch==2.3.1\nmodelscope\n")
    stamp = tmp_path / "venv" / ".stamp"
    (tmp_path / "venv" / "bin").mkdir(parents=True)
    (tmp_path / "venv" / "bin" / "python").write_text("")
    stamp.write_text('{"python": "3.10", "digest": "abc"}\n')
    uv = fake_uv(tmp_path / "uv", "uv 0.5.11 (c9bb5d4 2024-12-18)")
    rc, out = run({"requirements": str(requirements), "stamp": str(stamp), "uv": str(uv),
                   "venv": str(tmp_path / "venv"), "_ansible_check_mode": True}, capsys)
    assert rc == 0 and out["changed"] is False
    # base64 as slurp returns it: a fingerprint computed from it stays the one computed before 1.10.0
    assert out["requirements_content"] == base64.b64encode(requirements.read_bytes()).decode()
    assert out["stamp"] == '{"python": "3.10", "digest": "abc"}'
    assert out["uv_version"] == "0.5.11" and out["venv_exists"] is True


def test_a_new_host_has_nothing_yet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = {"requirements": str(tmp_path / "src" / "requirements.txt"), "stamp": str(tmp_path / "stamp"),
            "uv": str(tmp_path / "tools" / "bin" / "uv"), "venv": str(tmp_path / "venv")}
    rc, out = run({**args, "requirements_required": False}, capsys)
    assert rc == 0
    assert out["requirements_content"] is None and out["stamp"] == ""
    assert out["uv_version"] == "" and out["venv_exists"] is False
    rc, out = run(args, capsys)
    assert rc == 1 and "has no requirements file" in out["msg"] and str(tmp_path / "src") in out["msg"]


def test_uv_is_not_asked_without_a_path_and_a_stranger_is_not_uv(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "requirements.txt").write_text("")
    args = {"requirements": str(tmp_path / "requirements.txt"), "stamp": str(tmp_path / "stamp"),
            "venv": str(tmp_path / "venv")}
    assert run(args, capsys)[1]["uv_version"] == ""
    stranger = fake_uv(tmp_path / "uv", "something else 1.0")
    assert run({**args, "uv": str(stranger)}, capsys)[1]["uv_version"] == ""
    os.chmod(stranger, 0o644)  # not executable: not run
    assert run({**args, "uv": str(stranger)}, capsys)[1]["uv_version"] == ""
