"""Every module's DOCUMENTATION, EXAMPLES and RETURN parse as YAML, and every description is text.

ansible-doc (and ansible-lint, which only warns) cannot read a module whose docs fail here: a `word: text`
inside a description line is a mapping to YAML, not a sentence (it broke package_state's docs once)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
import yaml

MODULES = sorted((Path(__file__).resolve().parents[2] / "plugins" / "modules").glob("*.py"))


def _doc_strings(path: Path) -> dict[str, str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id in ("DOCUMENTATION", "EXAMPLES", "RETURN"):
                    out[target.id] = node.value.value
    return out


def _descriptions(node: Any, where: str) -> list[tuple[str, Any]]:
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("description", "short_description"):
                found += [(f"{where}.{key}", x) for x in (value if isinstance(value, list) else [value])]
            else:
                found += _descriptions(value, f"{where}.{key}")
    elif isinstance(node, list):
        for item in node:
            found += _descriptions(item, where)
    return found


@pytest.mark.parametrize("path", MODULES, ids=[p.stem for p in MODULES])
def test_module_docs_parse_and_describe_in_text(path: Path) -> None:
    docs = _doc_strings(path)
    assert set(docs) == {"DOCUMENTATION", "EXAMPLES", "RETURN"}, path.name
    parsed = {name: yaml.safe_load(text) for name, text in docs.items()}
    assert parsed["DOCUMENTATION"]["module"] == path.stem
    for name in ("DOCUMENTATION", "RETURN"):
        for where, text in _descriptions(parsed[name], name):
            assert isinstance(text, str), f"{path.name} {where}: {text!r} is not text (a ': ' in a description?)"


# The other plugins with their own DOCUMENTATION (filters are documented in their files' docstrings).
PLUGINS = sorted(
    p for kind in ("callback", "strategy", "lookup", "action")
    for p in (Path(__file__).resolve().parents[2] / "plugins" / kind).glob("*.py")
    if "DOCUMENTATION" in p.read_text(encoding="utf-8")
)


@pytest.mark.parametrize("path", PLUGINS, ids=[f"{p.parent.name}/{p.stem}" for p in PLUGINS])
def test_plugin_docs_parse_and_describe_in_text(path: Path) -> None:
    doc = yaml.safe_load(_doc_strings(path)["DOCUMENTATION"])
    assert doc["name"] == path.stem
    for where, text in _descriptions(doc, "DOCUMENTATION"):
        assert isinstance(text, str), f"{path.name} {where}: {text!r} is not text (a ': ' in a description?)"
    for note in doc.get("notes", []):
        assert isinstance(note, str), f"{path.name} notes: {note!r} is not text"


def test_the_strategy_and_callback_are_documented() -> None:
    assert {f"{p.parent.name}/{p.stem}" for p in PLUGINS} >= {"strategy/linear", "callback/warm_plugins"}
