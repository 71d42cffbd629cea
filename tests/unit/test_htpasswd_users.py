"""cosyvoice.deploy.htpasswd_users: exactly the listed users, one run, no hash or password in the result."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from ansible.module_utils.testing import patch_module_args
from passlib.apache import HtpasswdFile

from ansible_collections.cosyvoice.deploy.plugins.modules import htpasswd_users as hu

ME = os.getuid()


def run(args: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    # The test runs unprivileged: the file belongs to the caller.
    import grp
    import pwd
    base = {"owner": pwd.getpwuid(ME).pw_name, "group": grp.getgrgid(os.getgid()).gr_name}
    with patch_module_args({**base, **args}), pytest.raises(SystemExit) as exit_:
        hu.main()
    return int(exit_.value.code or 0), json.loads(capsys.readouterr().out)


USERS = [{"name": "alice", "password": "correct horse battery"}, {"name": "bob", "password": "tr0ub4dor&3-long"}]


def test_a_new_file_holds_the_users_then_a_rerun_changes_nothing(tmp_path: Path, capsys) -> None:
    path = tmp_path / "site.htpasswd"
    rc, out = run({"path": str(path), "users": USERS, "_ansible_diff": True}, capsys)
    assert rc == 0 and out["changed"] is True and out["added"] == ["alice", "bob"]
    ht = HtpasswdFile(str(path))
    assert ht.check_password("alice", "correct horse battery") and ht.check_password("bob", "tr0ub4dor&3-long")
    assert ht.get_hash("alice").startswith(b"$apr1$")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    # Neither a password nor a hash in what the module returns (--diff shows names).
    text = json.dumps(out)
    assert "correct horse" not in text and "$apr1$" not in text and "alice" in out["diff"]["after"]
    before = path.read_bytes()
    rc, out = run({"path": str(path), "users": USERS}, capsys)
    assert rc == 0 and out["changed"] is False and out == {**out, "added": [], "updated": [], "removed": []}
    assert path.read_bytes() == before  # hashes and salts kept


def test_drift_is_repaired_changed_password_extra_user_and_mode(tmp_path: Path, capsys) -> None:
    path = tmp_path / "site.htpasswd"
    run({"path": str(path), "users": USERS}, capsys)
    ht = HtpasswdFile(str(path))
    ht.set_password("bob", "set by hand")
    ht.set_password("mallory", "added by hand")
    ht.save()
    path.chmod(0o644)
    rc, out = run({"path": str(path), "users": USERS}, capsys)
    assert rc == 0 and out["changed"] is True
    assert out["updated"] == ["bob"] and out["removed"] == ["mallory"] and out["added"] == []
    ht = HtpasswdFile(str(path))
    assert sorted(ht.users()) == ["alice", "bob"] and ht.check_password("bob", "tr0ub4dor&3-long")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_check_mode_reports_and_writes_nothing(tmp_path: Path, capsys) -> None:
    path = tmp_path / "site.htpasswd"
    rc, out = run({"path": str(path), "users": USERS, "_ansible_check_mode": True}, capsys)
    assert rc == 0 and out["changed"] is True and not path.exists()
    run({"path": str(path), "users": USERS}, capsys)
    before = path.read_bytes()
    rc, out = run({"path": str(path), "users": USERS[:1], "_ansible_check_mode": True}, capsys)
    assert rc == 0 and out["changed"] is True and out["removed"] == ["bob"] and path.read_bytes() == before


def test_a_file_written_by_community_general_htpasswd_is_a_noop(tmp_path: Path, capsys) -> None:
    # What community.general.htpasswd (1.10.0 and before) wrote: passlib, apr_md5_crypt.
    path = tmp_path / "site.htpasswd"
    ht = HtpasswdFile(str(path), new=True, default_scheme="apr_md5_crypt")
    for user in USERS:
        ht.set_password(user["name"], user["password"])
    ht.save()
    path.chmod(0o640)
    rc, out = run({"path": str(path), "users": USERS}, capsys)
    assert rc == 0 and out["changed"] is False


def test_an_unparseable_file_is_replaced_and_other_schemes_hash(tmp_path: Path, capsys) -> None:
    path = tmp_path / "site.htpasswd"
    path.write_text("this is not an htpasswd file\n")
    rc, out = run({"path": str(path), "users": USERS[:1], "hash_scheme": "sha512_crypt"}, capsys)
    assert rc == 0 and out["changed"] is True
    ht = HtpasswdFile(str(path))
    assert ht.users() == ["alice"] and ht.get_hash("alice").startswith(b"$6$")


def test_bad_names_fail_before_anything_is_written(tmp_path: Path, capsys) -> None:
    path = tmp_path / "site.htpasswd"
    rc, out = run({"path": str(path), "users": [{"name": "a:b", "password": "x" * 12}]}, capsys)
    assert rc == 1 and "names must be unique" in out["msg"] and not path.exists()
    rc, out = run({"path": str(path), "users": USERS + USERS[:1]}, capsys)
    assert rc == 1 and not path.exists()
    assert "correct horse" not in json.dumps(out)
