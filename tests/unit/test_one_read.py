"""1.14.0: a role's first read also answers what its later reads asked the host for (one module run instead of
two or three), and the answers are the ones the separate modules give.

- package_state `stat.types` (presence only: no digest of a model's weights), `stat.secret_paths` + `stat.key`
  (a login file by HMAC under the run's key, never a plain sha256), `tls_selfsigned` (what tls_selfsigned_state
  reads), `htpasswd` (whether htpasswd_users would leave the file as it is);
- git_checkout_state `env` (what python_env_state reads, when the checkout is current)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

import pytest
from passlib.apache import HtpasswdFile

from ansible_collections.cosyvoice.deploy.plugins.module_utils.file_state import (
    entry_settled,
    hmac_of,
    path_state,
    path_type,
)
from ansible_collections.cosyvoice.deploy.plugins.module_utils.htpasswd import htpasswd_settled
from ansible_collections.cosyvoice.deploy.plugins.module_utils.tls_state import read_selfsigned
from tests.unit.test_git_checkout_state import checkout  # noqa: F401  pylint: disable=unused-import
from tests.unit.test_git_checkout_state import run as run_checkout
from tests.unit.test_host_files import GROUP, ME
from tests.unit.test_package_state import run as run_package_state
from tests.unit.test_python_env_state import run as run_env_state
from tests.unit.test_tls_selfsigned_state import tls  # noqa: F401  pylint: disable=unused-import

KEY = "k" * 43


def test_types_read_presence_only(tmp_path: Path) -> None:
    (tmp_path / "llm.pt").write_bytes(b"\0" * 1024)
    (tmp_path / "dir").mkdir()
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    assert path_type(str(tmp_path / "llm.pt")) == {"type": "file"}  # no owner, mode or sha256
    assert path_type(str(tmp_path / "dir")) == {"type": "directory"}
    assert path_type(str(tmp_path / "dangling")) == {"type": "link"}
    assert path_type(str(tmp_path / "missing")) == {"type": "absent"}


def test_a_secret_file_is_read_by_hmac_and_settled_only_with_the_key(tmp_path: Path) -> None:
    auth = tmp_path / "auth.json"
    content = '{"users": [["alice", "correct horse battery"]]}\n'
    auth.write_text(content)
    auth.chmod(0o600)
    state = path_state(str(auth), KEY)
    assert "sha256" not in state and state["hmac"] == hmac_of(content.encode(), KEY)
    assert hashlib.sha256(content.encode()).hexdigest() not in state.values()
    entry = {"path": str(auth), "content": content, "owner": ME, "group": GROUP, "mode": "0600"}
    assert entry_settled(entry, state, KEY)
    assert not entry_settled(entry, state)  # no key: the module reads the file itself
    assert not entry_settled(entry, state, "another run's key")
    assert not entry_settled({**entry, "content": content.replace("battery", "staple")}, state, KEY)
    assert not entry_settled({**entry, "mode": "0644"}, state, KEY)


def test_package_state_reads_types_and_secret_paths_in_the_same_run(tmp_path: Path, capsys) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "llm.pt").write_bytes(b"weights")
    (tmp_path / "auth.json").write_text("secret\n")
    stat = {"paths": [str(tmp_path / "model")], "types": [str(tmp_path / "model" / "llm.pt"),
                                                           str(tmp_path / "model" / "flow.pt")],
            "secret_paths": [str(tmp_path / "auth.json")], "key": KEY}
    rc, out = run_package_state({"names": [], "stat": stat}, capsys)
    assert rc == 0
    read = out["stat"]
    assert read[str(tmp_path / "model" / "llm.pt")] == {"type": "file"}
    assert read[str(tmp_path / "model" / "flow.pt")] == {"type": "absent"}
    assert read[str(tmp_path / "model")]["type"] == "directory"
    assert read[str(tmp_path / "auth.json")]["hmac"] == hmac_of(b"secret\n", KEY)
    assert "sha256" not in read[str(tmp_path / "auth.json")]
    assert KEY not in json.dumps(out)  # the key is never returned
    # Without a key the secret paths are not read at all.
    rc, out = run_package_state({"names": [], "stat": {**stat, "key": ""}}, capsys)
    assert str(tmp_path / "auth.json") not in out["stat"]


def test_package_state_reads_the_selfsigned_key_and_certificate_as_tls_selfsigned_state(tls, capsys) -> None:  # noqa: F811
    tmp_path, _key = tls
    options = {"key_path": str(tmp_path / "site.key"), "cert_path": str(tmp_path / "site.crt")}
    rc, out = run_package_state({"names": [], "tls_selfsigned": options}, capsys)
    assert rc == 0
    expected = read_selfsigned({"key_type": "ECC", "key_size": 3072, "curve": "secp256r1", "renew_days": 30,
                                **options})
    assert out["tls_selfsigned"] == expected
    assert out["tls_selfsigned"]["certificate"]["public_key_fingerprints"]["sha256"]


def _htpasswd(path: Path, users: dict[str, str], mode: int = 0o640) -> None:
    ht = HtpasswdFile(default_scheme="apr_md5_crypt")
    for name, password in users.items():
        ht.set_password(name, password)
    path.write_bytes(ht.to_string())
    path.chmod(mode)


def test_htpasswd_settled_agrees_with_what_htpasswd_users_would_change(tmp_path: Path) -> None:
    path = tmp_path / "htpasswd"
    users = [{"name": "alice", "password": "correct horse battery"}]
    args = ("apr_md5_crypt", ME, GROUP, "0640")
    assert not htpasswd_settled(str(path), users, *args)  # no file yet
    _htpasswd(path, {"alice": "correct horse battery"})
    assert htpasswd_settled(str(path), users, *args)
    assert not htpasswd_settled(str(path), [{"name": "alice", "password": "another one"}], *args)
    assert not htpasswd_settled(str(path), users + [{"name": "bob", "password": "x" * 12}], *args)
    _htpasswd(path, {"alice": "correct horse battery", "mallory": "y" * 12})
    assert not htpasswd_settled(str(path), users, *args)  # a user no longer listed
    _htpasswd(path, {"alice": "correct horse battery"}, mode=0o644)
    assert not htpasswd_settled(str(path), users, *args)  # readable by everyone
    path.write_text("not an htpasswd line\n")
    assert not htpasswd_settled(str(path), users, *args)


def test_package_state_htpasswd_never_returns_a_password(tmp_path: Path, capsys) -> None:
    path = tmp_path / "htpasswd"
    _htpasswd(path, {"alice": "correct horse battery"})
    options = {"path": str(path), "users": [{"name": "alice", "password": "correct horse battery"}],
               "owner": ME, "group": GROUP}
    rc, out = run_package_state({"names": [], "htpasswd": options}, capsys)
    assert rc == 0 and out["htpasswd_settled"] is True
    assert "correct horse battery" not in str(out)


def test_the_checkout_read_carries_the_environment_read_when_current(checkout, tmp_path, capsys,  # noqa: F811
                                                                     monkeypatch) -> None:
    url, dest, head = checkout
    (dest / "requirements.txt").write_text("torch==2.3.1\n")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("")
    (venv / ".stamp").write_text('{"python": "python3.10"}\n')
    env = {"requirements": str(dest / "requirements.txt"), "stamp": str(venv / ".stamp"), "venv": str(venv)}
    out = run_checkout({"repo": url, "dest": str(dest), "version": head, "env": env}, capsys, monkeypatch)
    assert out["current"] is True
    rc, alone = run_env_state(env, capsys)
    assert rc == 0
    assert out["env"] == {k: alone[k] for k in ("requirements_content", "stamp", "uv_version", "venv_exists")}
    assert base64.b64decode(out["env"]["requirements_content"]) == b"torch==2.3.1\n"
    # A checkout about to be rewritten: nothing is read from it (python.yml reads after the git task).
    (dest / "a.py").write_text("a = 2\n")
    out = run_checkout({"repo": url, "dest": str(dest), "version": head, "env": env}, capsys, monkeypatch)
    assert out["current"] is False and out["env"] is None
    out = run_checkout({"repo": url, "dest": str(tmp_path / "none"), "version": head,
                        "env": {**env, "requirements": str(tmp_path / "none" / "requirements.txt")}},
                       capsys, monkeypatch)
    assert out["env"] is None  # no checkout: requirements_required does not fail the read


@pytest.mark.skipif(os.geteuid() != 0, reason="the read runs as root on hosts")
def test_model_types_make_no_digest_of_large_files(tmp_path: Path, capsys) -> None:
    big = tmp_path / "llm.pt"
    with open(big, "wb") as handle:
        handle.truncate(64 * 1024 * 1024)
    rc, out = run_package_state({"names": [], "stat": {"types": [str(big)]}}, capsys)
    assert rc == 0 and out["stat"][str(big)] == {"type": "file"}


def test_package_state_reads_the_checkout_as_git_checkout_state(checkout, tmp_path, capsys,  # noqa: F811
                                                                monkeypatch) -> None:
    url, dest, head = checkout
    (dest / "requirements.txt").write_text("torch==2.3.1\n")
    env = {"requirements": str(dest / "requirements.txt"), "stamp": str(tmp_path / "stamp"),
           "venv": str(tmp_path / "venv")}
    args = {"repo": url, "dest": str(dest), "version": head, "env": env}
    alone = run_checkout(args, capsys, monkeypatch)  # sets git's environment for both runs
    rc, out = run_package_state({"names": [], "checkout": args}, capsys)
    assert rc == 0 and alone["current"] is True
    assert out["checkout"] == {k: alone[k] for k in ("repo", "current", "head", "why", "env")}
    # No git on the host yet: no answer (the role reads again after installing git), not "not current".
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr("ansible.module_utils.basic.AnsibleModule.get_bin_path",
                        lambda self, name, *a, **kw: None)
    rc, out = run_package_state({"names": [], "checkout": args}, capsys)
    assert rc == 0 and out["checkout"] is None
