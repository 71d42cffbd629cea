"""Unit tests for plugins/filter/verify_endpoint.py: what the verify role's validate.yml says about a bad endpoint."""

from __future__ import annotations

from typing import Any

import pytest

from ansible_collections.cosyvoice.deploy.plugins.filter import cosyvoice_endpoint as ce
from ansible_collections.cosyvoice.deploy.plugins.filter import verify_endpoint as ve


def good(exposure: str = "direct") -> dict[str, Any]:
    return ce.cosyvoice_endpoint(exposure, server_port=7860, public_address="203.0.113.7", auth=True)


@pytest.mark.parametrize("exposure", ["local", "direct", "proxy"])
def test_what_the_endpoint_filter_makes_is_usable(exposure: str) -> None:
    assert ve.verify_endpoint_problems(good(exposure)) == []


@pytest.mark.parametrize("endpoint", [None, {}, "direct", []])
def test_missing(endpoint: Any) -> None:
    (problem,) = ve.verify_endpoint_problems(endpoint)
    assert problem.startswith("it is missing. Run the whole site.yml") and "playbooks/diagnose.yml" in problem


def test_missing_keys_are_named_in_order() -> None:
    ep = good()
    del ep["url"], ep["exposure"]
    assert ve.verify_endpoint_problems(ep) == [
        "it lacks exposure, url (shape: docs/CONVENTIONS.md, made by the cosyvoice_endpoint filter)"]


def test_every_bad_value_is_named() -> None:
    ep = dict(good(), exposure="public", backend_port=70000, public_ports="7860", health_path="healthz",
              public_address="")
    assert ve.verify_endpoint_problems(ep) == [
        "exposure must be local, direct, proxy, backend, not public",
        "backend_port must be 1-65535, not 70000",
        "public_ports must be a list",
        "health_path must start with /",
        "public_address is empty: set cosyvoice_public_address to the address users type in the browser",
    ]


@pytest.mark.parametrize(("key", "value", "ok"), [
    ("backend_port", "7860", True), ("backend_port", 0, False), ("backend_port", "http", False),
    ("public_ports", [], True), ("public_ports", {"port": 7860}, False),
    ("health_path", None, False),
])
def test_values(key: str, value: Any, ok: bool) -> None:
    assert (ve.verify_endpoint_problems(dict(good(), **{key: value})) == []) is ok


def test_local_exposure_needs_no_public_address() -> None:
    assert ve.verify_endpoint_problems(dict(good("local"), public_address="")) == []


def test_filter_is_registered() -> None:
    assert set(ve.FilterModule().filters()) == {"verify_endpoint_problems"}
