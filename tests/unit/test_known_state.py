"""A role's earlier read (package_state stat) decides, on the controller, whether host_files and file_tree need a
module run. The decision must agree with the modules: a path the module would leave as it is is settled, and every
drift the module repairs (content, owner, mode, type, a link's target, a file purge removes) is not."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ansible_collections.cosyvoice.deploy.plugins.module_utils.file_state import (
    entry_settled,
    path_state,
    tree_settled,
    tree_state,
)
from tests.unit.test_file_tree import run_module as run_tree
from tests.unit.test_file_tree import tree
from tests.unit.test_host_files import GROUP, ME
from tests.unit.test_host_files import run_module as run_files
from tests.unit.test_package_state import run as run_package_state


def _entries(tmp_path: Path) -> list[dict]:
    return [
        {"path": str(tmp_path / "base"), "state": "directory"},
        {"path": str(tmp_path / "state"), "state": "directory", "mode": "0750"},
        {"path": str(tmp_path / "base" / "unit.service"), "content": "[Unit]\n"},
        {"path": str(tmp_path / "base" / "run"), "content": "#!/bin/sh\n", "mode": "0755"},
        {"path": str(tmp_path / "base" / "current"), "state": "link", "target": "unit.service"},
        {"path": str(tmp_path / "old.timer"), "state": "absent"},
        {"path": str(tmp_path / "base" / "later"), "state": "attributes", "mode": "0600"},
    ]


def _owned(entries: list[dict]) -> list[dict]:
    return [{"owner": ME, "group": GROUP, **e} for e in entries]


def _known(entries: list[dict]) -> dict:
    return {e["path"]: path_state(e["path"]) for e in entries}


def test_what_the_module_wrote_is_settled_and_a_new_host_is_not(tmp_path: Path):
    entries = _owned(_entries(tmp_path))
    before = _known(entries)
    assert not all(entry_settled(e, before[e["path"]]) for e in entries)
    assert run_files(_entries(tmp_path))["changed"]
    after = _known(entries)
    assert all(entry_settled(e, after[e["path"]]) for e in entries), after
    assert not run_files(_entries(tmp_path))["changed"]  # the module agrees: nothing to do


@pytest.mark.parametrize("drift", ["content", "mode", "owner", "type", "target", "present", "attributes"])
def test_each_drift_the_module_repairs_is_not_settled(tmp_path: Path, drift: str):
    entries = _owned(_entries(tmp_path))
    run_files(_entries(tmp_path))
    base = tmp_path / "base"
    if drift == "content":
        (base / "unit.service").write_text("[Unit]\nEdited=by hand\n")
    elif drift == "mode":
        os.chmod(tmp_path / "state", 0o755)
    elif drift == "owner":
        entries = [{**e, "owner": "nobody"} if e["path"].endswith("unit.service") else e for e in entries]
    elif drift == "type":
        (base / "run").unlink()
        (base / "run").mkdir()
    elif drift == "target":
        (base / "current").unlink()
        (base / "current").symlink_to("run")
    elif drift == "present":
        (tmp_path / "old.timer").write_text("back\n")
    else:
        (base / "later").write_text("x\n")
        os.chmod(base / "later", 0o644)
    known = _known(entries)
    assert not all(entry_settled(e, known[e["path"]]) for e in entries)


def test_unread_unknown_and_symbolic_modes_are_left_to_the_module(tmp_path: Path):
    run_files(_entries(tmp_path))
    entry = {"path": str(tmp_path / "state"), "state": "directory", "mode": "u=rwx,g=rx", "owner": ME,
             "group": GROUP}
    assert not entry_settled(entry, path_state(entry["path"]))
    assert not entry_settled({**entry, "mode": "0750"}, None)
    assert not entry_settled({**entry, "mode": "0750"}, {})
    assert entry_settled({**entry, "mode": "0750"}, path_state(entry["path"]))
    # A file entry without content (the action plugin renders it first) is never settled.
    assert not entry_settled({"path": str(tmp_path / "base" / "unit.service"), "owner": ME, "group": GROUP},
                             path_state(str(tmp_path / "base" / "unit.service")))


def test_a_tree_is_settled_only_when_the_module_would_leave_it(tmp_path: Path):
    src = tmp_path / "src"
    (src / "pkg" / "sub").mkdir(parents=True)
    (src / "pkg" / "__init__.py").write_text("")
    (src / "pkg" / "sub" / "mod.py").write_text("X = 1\n")
    dest = tmp_path / "dest"
    files = tree(src)
    args = {"dest": str(dest), "files": files, "purge": True}
    assert not tree_settled(files, tree_state(str(dest)), ME, GROUP, "0644", "0755", True)
    assert run_tree(args)["changed"]
    assert tree_settled(files, tree_state(str(dest)), ME, GROUP, "0644", "0755", True)
    assert not run_tree(args)["changed"]
    # Python's caches are not the tree's (purge leaves them): still settled.
    (dest / "pkg" / "__pycache__").mkdir()
    (dest / "pkg" / "__pycache__" / "mod.cpython-312.pyc").write_bytes(b"\0")
    assert tree_settled(files, tree_state(str(dest)), ME, GROUP, "0644", "0755", True)
    # A file purge would remove: settled only without purge.
    (dest / "pkg" / "stray.py").write_text("")
    assert not tree_settled(files, tree_state(str(dest)), ME, GROUP, "0644", "0755", True)
    assert tree_settled(files, tree_state(str(dest)), ME, GROUP, "0644", "0755", False)
    assert run_tree(args)["removed_files"] == ["pkg/stray.py"]
    for drift in ("content", "file mode", "dir mode"):
        if drift == "content":
            (dest / "pkg" / "sub" / "mod.py").write_text("X = 2\n")
        elif drift == "file mode":
            os.chmod(dest / "pkg" / "__init__.py", 0o666)
        else:
            os.chmod(dest / "pkg" / "sub", 0o777)
        assert not tree_settled(files, tree_state(str(dest)), ME, GROUP, "0644", "0755", True), drift
        assert run_tree(args)["changed"], drift
        assert tree_settled(files, tree_state(str(dest)), ME, GROUP, "0644", "0755", True), drift
    assert not tree_settled(files, None, ME, GROUP, "0644", "0755", True)
    assert not tree_settled(files, path_state(str(dest)), ME, GROUP, "0644", "0755", True)  # no `tree` read


def test_package_state_reads_paths_and_trees_in_its_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    run_files(_entries(tmp_path))
    paths = [e["path"] for e in _entries(tmp_path)]
    rc, out = run_package_state({"names": [], "stat": {"paths": paths, "trees": [str(tmp_path / "base")]}}, capsys)
    assert rc == 0
    stat = out["stat"]
    assert stat[str(tmp_path / "old.timer")] == {"type": "absent"}
    assert stat[str(tmp_path / "base" / "current")] == {"type": "link", "target": "unit.service"}
    assert stat[str(tmp_path / "state")]["mode"] == "0750" and stat[str(tmp_path / "state")]["owner"] == ME
    assert set(stat[str(tmp_path / "base")]["tree"]) == {"unit.service", "run", "current"}
    assert all(entry_settled(e, stat[e["path"]]) for e in _owned(_entries(tmp_path)))
    json.dumps(out)  # what Ansible registers


def test_the_action_plugins_skip_the_module_only_when_settled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The action plugins' own decision: a settled read -> no module run and changed false; else the module runs."""
    from unittest import mock

    from ansible_collections.cosyvoice.deploy.plugins.action import host_files as action

    run_files(_entries(tmp_path))
    entries = _owned(_entries(tmp_path))
    known = _known(entries)
    plugin = action.ActionModule.__new__(action.ActionModule)
    plugin._task = mock.Mock(args={"paths": entries, "known": known}, async_val=0, check_mode=False, diff=False)
    plugin._supports_check_mode = True
    plugin._supports_async = False
    calls = []
    monkeypatch.setattr(plugin, "_execute_module", lambda **kw: calls.append(kw) or {"changed": True}, raising=False)
    monkeypatch.setattr(action.ActionBase, "run", lambda self, tmp=None, task_vars=None: {}, raising=True)
    assert plugin.run(task_vars={}) == {"changed": False, "changed_paths": [], "settled_by_read": True}
    assert calls == []
    (tmp_path / "base" / "unit.service").write_text("edited\n")
    plugin._task.args["known"] = _known(entries)
    assert plugin.run(task_vars={}) == {"changed": True}
    assert calls and "known" not in calls[0]["module_args"]
