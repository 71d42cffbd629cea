"""Shared pytest setup: import paths for the filter plugins and the launcher."""

from __future__ import annotations

import sys
from pathlib import Path

# The launcher is copied to hosts as-is: never leave __pycache__ in the role.
sys.dont_write_bytecode = True

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "filter_plugins", ROOT / "roles" / "cosyvoice" / "files" / "launcher"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
