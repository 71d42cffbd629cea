"""cosyvoice.deploy.package_state: reading dpkg-query and rpm output, units, users and groups."""

from __future__ import annotations

import json
import os
import pwd
from pathlib import Path

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.cosyvoice.deploy.plugins.modules import package_state as ps
from ansible_collections.cosyvoice.deploy.plugins.module_utils.packages import dpkg_installed, rpm_installed


def test_only_fully_installed_dpkg_packages_count():
    out = "ii |nginx\nrc |ufw\nun |python3-passlib\nii |libc6:amd64\niF |half-configured\n"
    assert dpkg_installed(out) >= {"nginx", "libc6", "libc6:amd64"}
    assert not {"ufw", "python3-passlib", "half-configured"} & dpkg_installed(out)


def test_rpm_lists_names_and_says_what_is_missing():
    out = "nginx\npackage python3-passlib is not installed\nfirewalld\n"
    assert rpm_installed(out) == {"nginx", "firewalld"}


# --------------------------------------------------------------- units, users and groups (1.11.0)

def run(args: dict, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict]:
    with patch_module_args(args), pytest.raises(SystemExit) as exit_:
        ps.main()
    return int(exit_.value.code or 0), json.loads(capsys.readouterr().out)


SHOW = "ActiveState=active\nUnitFileState=enabled\n\nActiveState=inactive\nUnitFileState=\n\nUnitFileState=disabled\nActiveState=failed\n"


def test_unit_states_are_read_per_block_in_the_order_asked():
    states = ps.unit_states(SHOW, ["nginx", "nope.service", "cosyvoice-watchdog.timer"])
    assert states == {"nginx": {"active": "active", "enabled": "enabled"},
                      "nope.service": {"active": "inactive", "enabled": "not-found"},
                      "cosyvoice-watchdog.timer": {"active": "failed", "enabled": "disabled"}}
    # No output (no systemctl, or it failed): nothing is claimed to run.
    assert ps.unit_states("", ["nginx"]) == {"nginx": {"active": "unknown", "enabled": "unknown"}}


def test_shadow_fields_never_carry_a_hash():
    text = "root:$y$j9T$abc$def:20000:0:99999:7:::\ncosyvoice:!:20791::::::\nlocked:!$6$salt$hash:1::::::\nnobody:*:1::::::\n"
    assert ps.shadow_fields(text) == {"root": "hashed", "cosyvoice": "!", "locked": "hashed", "nobody": "*"}
    assert "$" not in json.dumps(ps.shadow_fields(text))


def test_accounts_are_read_from_the_account_databases():
    me = pwd.getpwuid(os.getuid())
    state = ps.user_state(me.pw_name, {me.pw_name: "!"})
    assert state is not None
    assert state["uid"] == me.pw_uid and state["home"] == me.pw_dir and state["shell"] == me.pw_shell
    assert state["password"] == "!"
    assert ps.user_state(me.pw_name, None)["password"] is None  # shadow unreadable: not known
    assert ps.user_state("no-such-user-cv", {}) is None
    assert ps.group_state("no-such-group-cv") is None
    assert ps.group_state(state["group"]) is not None


def test_one_run_reads_packages_units_and_accounts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    systemctl = tmp_path / "systemctl"
    # Answers as systemd does: one block per unit asked; records its arguments.
    systemctl.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path}/args\nprintf '{SHOW}'\n")
    systemctl.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    monkeypatch.setattr(ps, "read_shadow", lambda path=ps.SHADOW: None)
    me = pwd.getpwuid(os.getuid()).pw_name
    rc, out = run({"names": [], "services": ["nginx", "nope.service", "cosyvoice-watchdog.timer"],
                   "users": [me, "no-such-user-cv"], "groups": ["no-such-group-cv"], "_ansible_check_mode": True}, capsys)
    assert rc == 0 and out["changed"] is False and out["missing"] == []
    assert (tmp_path / "args").read_text().split() == [
        "show", "-p", "ActiveState", "-p", "UnitFileState", "--", "nginx", "nope.service", "cosyvoice-watchdog.timer"]
    assert out["services"]["nginx"] == {"active": "active", "enabled": "enabled"}
    assert out["services"]["nope.service"]["enabled"] == "not-found"
    assert out["users"][me]["password"] is None and out["users"]["no-such-user-cv"] is None
    assert out["groups"] == {"no-such-group-cv": None}


def test_without_the_new_options_the_answer_is_as_before(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out = run({"names": []}, capsys)
    assert rc == 0 and out["services"] == {} and out["users"] == {} and out["groups"] == {}
    assert "files" not in out


def _tree(root: Path) -> None:
    """A systemd directory as the cosyvoice role finds it: units, drop-ins, a wants link, a hidden file."""
    etc = root / "etc"
    (etc / "cosyvoice.service.d").mkdir(parents=True)
    (etc / "multi-user.target.wants").mkdir()
    (etc / "deep" / "deeper").mkdir(parents=True)
    for name in ("cosyvoice.service", "cosyvoice-1.service", "cosyvoice-watchdog.timer", "nginx.service",
                 "cosyvoice.service.d/override.conf", "cosyvoice.service.d/.hidden.conf", "deep/deeper/x.conf"):
        (etc / name).write_text("[Unit]\n")
    (etc / "multi-user.target.wants" / "cosyvoice.service").symlink_to(etc / "cosyvoice.service")


def test_files_lists_what_find_would(tmp_path: Path) -> None:
    _tree(tmp_path)
    etc = tmp_path / "etc"
    found = ps.find_files([str(etc) + "/", str(tmp_path / "missing")],
                          ["*.conf", "cosyvoice*.service", "cosyvoice*.timer"], 2)
    assert found == [
        {"path": f"{etc}/cosyvoice-1.service", "isreg": True},
        {"path": f"{etc}/cosyvoice-watchdog.timer", "isreg": True},
        {"path": f"{etc}/cosyvoice.service", "isreg": True},
        {"path": f"{etc}/cosyvoice.service.d/override.conf", "isreg": True},
        # A link is listed, not followed (find's isreg is False for it).
        {"path": f"{etc}/multi-user.target.wants/cosyvoice.service", "isreg": False},
    ]
    # depth 1: only the directory's own entries (the drop-in directory matches no pattern).
    assert [f["path"] for f in ps.find_files([str(etc)], ["cosyvoice*"], 1)] == [
        f"{etc}/cosyvoice-1.service", f"{etc}/cosyvoice-watchdog.timer", f"{etc}/cosyvoice.service",
        f"{etc}/cosyvoice.service.d"]
    assert ps.find_files([str(etc)], ["*.conf"], 3)[-1] == {"path": f"{etc}/deep/deeper/x.conf", "isreg": True}


def test_files_in_the_same_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _tree(tmp_path)
    rc, out = run({"names": [], "files": {"paths": [str(tmp_path / "etc")], "patterns": ["*.timer"], "depth": 2}},
                  capsys)
    assert rc == 0 and out["files"] == [{"path": f"{tmp_path}/etc/cosyvoice-watchdog.timer", "isreg": True}]
