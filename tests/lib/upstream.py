"""Where the upstream git bundles are (FunAudioLLM/CosyVoice and Matcha-TTS at the pinned commits).

They are test inputs, not part of the project: the developers' machines keep them in
../shared/upstream beside the checkout. COSYVOICE_UPSTREAM_DIR overrides the search.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PINNED = "ace7c47f41bbd303aa6bf1ea80e6f9fbd595cd40"
MATCHA_PINNED = "dd9105b34bf2be2230f4aa1e4769fb586a3c824e"
CANDIDATES = [
    os.environ.get("COSYVOICE_UPSTREAM_DIR", ""),
    str(ROOT / "shared" / "upstream"),
    str(ROOT.parent / "shared" / "upstream"),
    "/work/shared/upstream",
]


def upstream_dir() -> Path | None:
    """The first directory holding both bundles, or None."""
    for cand in CANDIDATES:
        if cand and (Path(cand) / "CosyVoice.bundle").is_file() and (Path(cand) / "Matcha-TTS.bundle").is_file():
            return Path(cand)
    return None
