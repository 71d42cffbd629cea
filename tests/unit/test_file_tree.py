"""cosyvoice.deploy.file_tree: the controller's tree reader and the module, run against a temp dir."""

from __future__ import annotations

import base64
import grp as _grp
import hashlib
import json
import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.cosyvoice.deploy.plugins.action.file_tree import read_tree
from tests.lib.targets import PROJECT

MODULE = PROJECT / "plugins" / "modules" / "file_tree.py"


def run_module(args: dict, check: bool = False, diff: bool = False) -> dict:
    """The module as Ansible runs it: JSON arguments on stdin, JSON result on stdout."""
    me = pwd.getpwuid(os.getuid()).pw_name
    grp = _grp.getgrgid(os.getgid()).gr_name
    payload = {"ANSIBLE_MODULE_ARGS": {"owner": me, "group": grp, **args, "_ansible_check_mode": check,
                                       "_ansible_diff": diff}}
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PROJECT / "collections"), *sys.path]))
    proc = subprocess.run([sys.executable, str(MODULE)], input=json.dumps(payload), capture_output=True, text=True,
                          env=env, check=False)
    return json.loads(proc.stdout)


def tree(src: Path) -> dict:
    return read_tree(str(src), ["__pycache__", "*.pyc", ".*"])


@pytest.fixture()
def src(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    (root / "pkg" / "__pycache__").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "main.py").write_text("print('hi')\n")
    (root / "pkg" / "__pycache__" / "main.cpython-311.pyc").write_bytes(b"\0junk")
    (root / ".hidden").write_text("x")
    (root / "requirements.txt").write_text("gradio==5.0\n")
    return root


def test_read_tree_skips_excluded_names_and_hashes_content(src: Path):
    files = tree(src)
    assert sorted(files) == ["pkg/__init__.py", "pkg/main.py", "requirements.txt"]
    data = base64.b64decode(files["pkg/main.py"]["content"])
    assert data == b"print('hi')\n"
    assert files["pkg/main.py"]["sha256"] == hashlib.sha256(data).hexdigest()


def test_install_then_nothing_to_do(src: Path, tmp_path: Path):
    dest = tmp_path / "dest"
    first = run_module({"dest": str(dest), "files": tree(src)})
    assert first["changed"] and sorted(first["changed_files"]) == ["pkg/__init__.py", "pkg/main.py", "requirements.txt"]
    assert (dest / "pkg" / "main.py").read_text() == "print('hi')\n"
    assert oct((dest / "pkg" / "main.py").stat().st_mode & 0o777) == "0o644"
    assert oct((dest / "pkg").stat().st_mode & 0o777) == "0o755"
    again = run_module({"dest": str(dest), "files": tree(src)})
    assert not again["changed"] and again["changed_files"] == [] and again["count"] == 3


def test_drift_reported_in_check_mode_with_diff_then_repaired(src: Path, tmp_path: Path):
    dest = tmp_path / "dest"
    run_module({"dest": str(dest), "files": tree(src)})
    (dest / "pkg" / "main.py").write_text("print('hi')\n# local hotfix\n")
    (dest / "pkg" / "main.py").chmod(0o600)
    (dest / "stale.py").write_text("old module")
    check = run_module({"dest": str(dest), "files": tree(src), "purge": True}, check=True, diff=True)
    assert check["changed"] and check["changed_files"] == ["pkg/main.py"] and check["removed_files"] == ["stale.py"]
    assert "# local hotfix" in check["diff"][0]["before"] and "# local hotfix" not in check["diff"][0]["after"]
    assert (dest / "pkg" / "main.py").read_text().endswith("# local hotfix\n")  # check mode changed nothing
    assert (dest / "stale.py").exists()
    fix = run_module({"dest": str(dest), "files": tree(src), "purge": True})
    assert fix["changed"] and (dest / "pkg" / "main.py").read_text() == "print('hi')\n"
    assert oct((dest / "pkg" / "main.py").stat().st_mode & 0o777) == "0o644"
    assert not (dest / "stale.py").exists()
    assert not run_module({"dest": str(dest), "files": tree(src), "purge": True})["changed"]


def test_mode_drift_alone_is_repaired(src: Path, tmp_path: Path):
    dest = tmp_path / "dest"
    run_module({"dest": str(dest), "files": tree(src)})
    (dest / "requirements.txt").chmod(0o666)
    result = run_module({"dest": str(dest), "files": tree(src)})
    assert result["changed"] and result["changed_files"] == ["requirements.txt"]
    assert oct((dest / "requirements.txt").stat().st_mode & 0o777) == "0o644"


def test_purge_keeps_pycache(src: Path, tmp_path: Path):
    dest = tmp_path / "dest"
    run_module({"dest": str(dest), "files": tree(src)})
    (dest / "pkg" / "__pycache__").mkdir()
    (dest / "pkg" / "__pycache__" / "main.cpython-311.pyc").write_bytes(b"\0")
    assert not run_module({"dest": str(dest), "files": tree(src), "purge": True})["changed"]
    assert (dest / "pkg" / "__pycache__" / "main.cpython-311.pyc").exists()


def test_refuses_paths_outside_dest_and_damaged_content(src: Path, tmp_path: Path):
    files = tree(src)
    bad = {"../escape.py": files["pkg/main.py"]}
    result = run_module({"dest": str(tmp_path / "d1"), "files": bad})
    assert result.get("failed") and "inside dest" in result["msg"]
    damaged = {"a.py": {"content": files["pkg/main.py"]["content"], "sha256": "0" * 64}}
    result = run_module({"dest": str(tmp_path / "d2"), "files": damaged})
    assert result.get("failed") and "sha256" in result["msg"]
