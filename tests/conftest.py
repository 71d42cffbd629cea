"""Shared pytest setup: the project root on sys.path, then tests.lib's import paths."""

from __future__ import annotations

import sys
from pathlib import Path

# The launcher is copied to hosts as-is: never leave __pycache__ in the role.
sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import tests.lib  # noqa: E402,F401  (sets the import paths)
