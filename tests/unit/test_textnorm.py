"""Staged wetext grammars: extraction from the WeTextProcessing wheel, completeness, offline use."""

from __future__ import annotations

import sys
import types
import zipfile

import pytest
from cosyvoice_launcher import textnorm


def _wheel(path, members=textnorm.WHEEL_MEMBERS.values()):
    with zipfile.ZipFile(path, "w") as zf:
        for member in members:
            zf.writestr(member, f"fst bytes of {member}")
        zf.writestr("tn/__init__.py", "")
    return path


def test_extract_wheel_writes_wetexts_layout(tmp_path):
    dest = tmp_path / "wetext"
    written = textnorm.extract_wheel(_wheel(tmp_path / "w.whl"), dest)
    assert sorted(written) == sorted(textnorm.REQUIRED)
    assert (dest / "zh/tn/verbalizer.fst").read_text() == "fst bytes of tn/zh_tn_verbalizer.fst"
    assert textnorm.missing(dest) == []
    assert oct((dest / "en/tn/tagger.fst").stat().st_mode & 0o777) == "0o644"
    assert not list(dest.rglob("*.part"))


def test_a_wheel_without_grammars_is_refused(tmp_path):
    with pytest.raises(textnorm.TextNormError, match="not a WeTextProcessing wheel"):
        textnorm.extract_wheel(_wheel(tmp_path / "w.whl", ["tn/en_tn_tagger.fst"]), tmp_path / "d")


def test_missing_lists_absent_and_empty_files(tmp_path):
    textnorm.extract_wheel(_wheel(tmp_path / "w.whl"), tmp_path)
    (tmp_path / "zh/tn/tagger.fst").write_bytes(b"")
    (tmp_path / "en/tn/verbalizer.fst").unlink()
    assert textnorm.missing(tmp_path) == ["en/tn/verbalizer.fst", "zh/tn/tagger.fst"]


def test_check_cli(tmp_path, capsys):
    assert textnorm.main(["check", "--dest", str(tmp_path)]) == 1
    assert "is missing en/tn/tagger.fst" in capsys.readouterr().err
    textnorm.extract_wheel(_wheel(tmp_path / "w.whl"), tmp_path)
    assert textnorm.main(["check", "--dest", str(tmp_path)]) == 0


def test_wetext_is_pointed_at_the_staged_dir_without_a_hub_request(tmp_path, monkeypatch):
    """wetext's module-level snapshot_download (bound from modelscope at import) is replaced."""
    textnorm.extract_wheel(_wheel(tmp_path / "w.whl"), tmp_path)
    hub_calls = []
    fake = types.ModuleType("wetext.wetext")
    fake.snapshot_download = lambda repo_id, **kw: hub_calls.append(repo_id)  # what modelscope would do
    package = types.ModuleType("wetext")
    package.wetext = fake
    monkeypatch.setitem(sys.modules, "wetext", package)
    monkeypatch.setitem(sys.modules, "wetext.wetext", fake)

    textnorm.use_local_wetext(tmp_path)
    assert fake.snapshot_download("pengzhendong/wetext") == str(tmp_path)
    with pytest.raises(textnorm.TextNormError, match="only pengzhendong/wetext is staged"):
        fake.snapshot_download("someone/else")
    assert hub_calls == []


def test_incomplete_staging_is_a_clear_start_error(tmp_path):
    with pytest.raises(textnorm.TextNormError, match="re-run the cosyvoice role"):
        textnorm.use_local_wetext(tmp_path)
