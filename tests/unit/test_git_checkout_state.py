"""cosyvoice.deploy.git_checkout_state: when the checkout is exactly the pinned commit (offline read)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.cosyvoice.deploy.plugins.module_utils.git_checkout import judge
from ansible_collections.cosyvoice.deploy.plugins.modules import git_checkout_state as gcs

SHA = "ace7c47f41bbd303aa6bf1ea80e6f9fbd595cd40"
ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
       "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent", "PATH": "/usr/bin:/bin",
       "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "protocol.file.allow", "GIT_CONFIG_VALUE_0": "always"}


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env=ENV, check=True, capture_output=True, text=True).stdout.strip()


def run(args: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    with patch_module_args({**args, "_ansible_check_mode": True}), pytest.raises(SystemExit) as exit_:
        gcs.main()
    assert exit_.value.code in (0, None)
    return json.loads(capsys.readouterr().out)


def test_judge_names_the_first_reason() -> None:
    clean = (SHA, "https://mirror/x.git", SHA, "https://mirror/x.git", "", " abc third_party/Matcha-TTS (heads/main)\n")
    assert judge(*clean) == ""
    assert judge("v1.0", *clean[1:]) == "the version is not a full commit id"
    assert judge(SHA, clean[1], "", *clean[3:]) == "no checkout"
    assert judge(SHA, clean[1], "0" * 40, *clean[3:]).startswith("HEAD is")
    assert judge(SHA, clean[1], SHA, "https://github.com/x.git", *clean[4:]).startswith("origin is")
    assert judge(*clean[:4], "?? notes.txt\n", clean[5]) == ""  # untracked files are not local changes
    assert judge(*clean[:4], " M cosyvoice/cli/cosyvoice.py\n", clean[5]).startswith("tracked files changed")
    assert judge(*clean[:4], "", "+abc third_party/Matcha-TTS\n").startswith("submodules not at")
    assert judge(*clean[:4], "", "-abc third_party/Matcha-TTS\n").startswith("submodules not at")
    assert judge(*clean[:4], None, clean[5]) == "git status could not be read"


@pytest.fixture
def checkout(tmp_path: Path) -> tuple[str, Path, str]:
    """An upstream with a submodule, and a clone of it with the submodule checked out."""
    sub = tmp_path / "matcha"
    sub.mkdir()
    git("init", "-q", "-b", "main", cwd=sub)
    (sub / "m.py").write_text("x = 1\n")
    git("add", ".", cwd=sub)
    git("commit", "-qm", "m", cwd=sub)
    up = tmp_path / "upstream"
    up.mkdir()
    git("init", "-q", "-b", "main", cwd=up)
    (up / "a.py").write_text("a = 1\n")
    git("submodule", "add", "-q", f"file://{sub}", "third_party/Matcha-TTS", cwd=up)
    git("add", ".", cwd=up)
    git("commit", "-qm", "a", cwd=up)
    dest = tmp_path / "src"
    url = f"file://{up}"
    git("clone", "-q", "--recursive", url, str(dest))
    return url, dest, git("rev-parse", "HEAD", cwd=dest)


def test_a_clean_checkout_at_the_pin_is_current_and_drift_is_not(checkout, capsys, monkeypatch) -> None:
    url, dest, head = checkout
    args = {"repo": url, "dest": str(dest), "version": head}
    out = run(args, capsys, monkeypatch)
    assert out == {**out, "changed": False, "repo": url, "current": True, "head": head, "why": ""}
    (dest / "notes.txt").write_text("untracked\n")
    assert run(args, capsys, monkeypatch)["current"] is True
    (dest / "a.py").write_text("a = 2  # local hotfix\n")
    out = run(args, capsys, monkeypatch)
    assert out["current"] is False and "a.py" in out["why"]
    git("checkout", "-q", "a.py", cwd=dest)
    (dest / "third_party" / "Matcha-TTS" / "m.py").write_text("x = 2\n")  # an edit inside the submodule
    assert run(args, capsys, monkeypatch)["current"] is False
    git("checkout", "-q", "m.py", cwd=dest / "third_party" / "Matcha-TTS")
    assert run(args, capsys, monkeypatch)["current"] is True
    git("submodule", "deinit", "-q", "--all", "-f", cwd=dest)
    out = run(args, capsys, monkeypatch)
    assert out["current"] is False and "submodules not at" in out["why"]


def test_another_pin_another_origin_or_no_checkout_is_not_current(checkout, tmp_path, capsys, monkeypatch) -> None:
    url, dest, head = checkout
    assert run({"repo": url, "dest": str(dest), "version": SHA}, capsys, monkeypatch)["why"].startswith("HEAD is")
    out = run({"repo": "https://github.com/FunAudioLLM/CosyVoice.git", "dest": str(dest), "version": head},
              capsys, monkeypatch)
    assert out["current"] is False and out["why"].startswith("origin is")
    out = run({"repo": url, "dest": str(tmp_path / "nothing"), "version": head}, capsys, monkeypatch)
    assert out["current"] is False and out["why"] == "no checkout" and out["head"] == ""


def test_insteadof_rules_resolve_the_url(checkout, capsys, monkeypatch) -> None:
    url, dest, head = checkout
    monkeypatch.setitem(ENV, "GIT_CONFIG_COUNT", "2")
    monkeypatch.setitem(ENV, "GIT_CONFIG_KEY_1", f"url.{url}.insteadOf")
    monkeypatch.setitem(ENV, "GIT_CONFIG_VALUE_1", "https://github.com/FunAudioLLM/CosyVoice.git")
    out = run({"repo": "https://github.com/FunAudioLLM/CosyVoice.git", "dest": str(dest), "version": head},
              capsys, monkeypatch)
    assert out["repo"] == url and out["current"] is True
