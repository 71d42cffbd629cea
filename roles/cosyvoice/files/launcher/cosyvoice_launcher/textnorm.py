"""Text-normalisation resources (wetext) for CosyVoice's frontend, staged ahead and used offline.

CosyVoice's frontend builds ``wetext.Normalizer()`` without paths, and wetext then calls
``modelscope.snapshot_download("pengzhendong/wetext")`` at every start. modelscope asks the
hub for the file list even when every file is cached, so without the hub the call fails,
upstream swallows the error and the service runs with no text normalisation at all.

The role stages the resources once into a root-owned directory (from ModelScope, or the
same FST grammars from PyPI's WeTextProcessing wheel) and the launcher points wetext at
that directory: no hub request at start, and a missing file is a clear start error.

    python -m cosyvoice_launcher.textnorm fetch-pypi --package WeTextProcessing==1.0.3 --dest DIR
    python -m cosyvoice_launcher.textnorm check --dest DIR

Stdlib only (runs before anything else is importable).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

log = logging.getLogger("cosyvoice_launcher")

WETEXT_REPO = "pengzhendong/wetext"
# The files CosyVoice's frontend loads: Normalizer(remove_erhua=False) and Normalizer()
# = text normalisation (tn) for zh and en, in wetext's layout.
REQUIRED = ("en/tn/tagger.fst", "en/tn/verbalizer.fst", "zh/tn/tagger.fst", "zh/tn/verbalizer.fst")
# Where WeTextProcessing's wheel keeps the same grammars.
WHEEL_MEMBERS = {
    "en/tn/tagger.fst": "tn/en_tn_tagger.fst",
    "en/tn/verbalizer.fst": "tn/en_tn_verbalizer.fst",
    "zh/tn/tagger.fst": "tn/zh_tn_tagger.fst",
    "zh/tn/verbalizer.fst": "tn/zh_tn_verbalizer.fst",
}


class TextNormError(RuntimeError):
    """The resources are missing or unusable; the message says what to do."""


def missing(dest: str | os.PathLike[str]) -> list[str]:
    root = Path(dest)
    return [rel for rel in REQUIRED if not (root / rel).is_file() or (root / rel).stat().st_size == 0]


def extract_wheel(wheel: str | os.PathLike[str], dest: str | os.PathLike[str]) -> list[str]:
    """Copy the grammars out of a WeTextProcessing wheel into wetext's layout under dest."""
    dest = Path(dest)
    written = []
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        absent = [m for m in WHEEL_MEMBERS.values() if m not in names]
        if absent:
            raise TextNormError(f"{wheel} has no {', '.join(absent)}: not a WeTextProcessing wheel with grammars")
        for rel, member in WHEEL_MEMBERS.items():
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(".part")
            with zf.open(member) as src, open(tmp, "wb") as out:
                shutil.copyfileobj(src, out)
            tmp.chmod(0o644)
            tmp.replace(target)
            written.append(rel)
    return written


def fetch_pypi(package: str, dest: str | os.PathLike[str], python: str = sys.executable) -> list[str]:
    """pip-download the wheel (index settings from PIP_* in the environment) and extract it."""
    with tempfile.TemporaryDirectory(prefix="wetext-") as tmp:
        cmd = [python, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--dest", tmp, package]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise TextNormError(f"pip download {package} failed: {proc.stderr.strip()[-800:]}")
        wheels = sorted(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise TextNormError(f"pip download {package} gave {len(wheels)} wheels, expected 1")
        return extract_wheel(wheels[0], dest)


def use_local_wetext(dest: str | os.PathLike[str]) -> None:
    """Make ``wetext.Normalizer()`` load the staged grammars instead of asking ModelScope.

    wetext binds ``snapshot_download`` at import; replacing that binding (and only it)
    keeps every other modelscope call as upstream has it.
    """
    gaps = missing(dest)
    if gaps:
        raise TextNormError(
            f"text-normalisation resources in {dest} are incomplete (missing {', '.join(gaps)}); "
            f"re-run the cosyvoice role (tag cosyvoice_model) to stage them"
        )
    import wetext.wetext as wetext_module  # noqa: PLC0415 - only with the engine's venv

    staged = str(dest)

    def snapshot_download(repo_id: str, *args: Any, **kwargs: Any) -> str:
        if repo_id != WETEXT_REPO:
            raise TextNormError(f"wetext asked for {repo_id!r}; only {WETEXT_REPO} is staged (in {staged})")
        return staged

    wetext_module.snapshot_download = snapshot_download
    log.info("text normalisation: wetext grammars from %s (no hub request)", staged)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="cosyvoice_launcher.textnorm", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch-pypi", help="download a WeTextProcessing wheel and extract its grammars")
    f.add_argument("--package", required=True, help="requirement, e.g. WeTextProcessing==1.0.3")
    f.add_argument("--dest", required=True)
    c = sub.add_parser("check", help="exit 1 unless every file CosyVoice's frontend loads is there")
    c.add_argument("--dest", required=True)
    ns = ap.parse_args(argv)
    try:
        if ns.cmd == "fetch-pypi":
            for rel in fetch_pypi(ns.package, ns.dest):
                print(f"{ns.dest}/{rel}")
        gaps = missing(ns.dest)
    except TextNormError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if gaps:
        print(f"error: {ns.dest} is missing {', '.join(gaps)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
