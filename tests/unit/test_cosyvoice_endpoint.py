"""The exposure -> ports/URL logic every layer reads (filter_plugins/cosyvoice_endpoint.py)."""

from __future__ import annotations

import pytest
from ansible_collections.cosyvoice.deploy.plugins.filter.cosyvoice_endpoint import (
    EndpointError,
    FilterModule,
    build_url,
    cosyvoice_endpoint,
    is_host,
    normalize_root_path,
    url_host,
)


def test_direct_opens_the_app_port_on_all_interfaces():
    ep = cosyvoice_endpoint("direct", server_port=7860, public_address="203.0.113.7", auth=True)
    assert ep["bind_address"] == "0.0.0.0"
    assert ep["public_ports"] == [{"port": 7860, "proto": "tcp", "purpose": "app"}]
    assert ep["url"] == "http://203.0.113.7:7860/"
    assert ep["backend_url"] == "http://127.0.0.1:7860/"
    assert ep["health_path"] == "/healthz"
    assert ep["auth"] is True


def test_proxy_opens_80_and_443_and_keeps_the_app_on_loopback():
    ep = cosyvoice_endpoint("proxy", server_port="7860", public_address="tts.example.com", root_path="tts/")
    assert ep["bind_address"] == "127.0.0.1"
    assert [p["port"] for p in ep["public_ports"]] == [80, 443]
    assert ep["url"] == "https://tts.example.com/tts/"
    assert ep["health_path"] == "/tts/healthz"
    assert ep["backend_url"] == "http://127.0.0.1:7860/tts/"


def test_local_opens_nothing():
    ep = cosyvoice_endpoint("local", server_port=7860, public_address=None)
    assert ep["public_ports"] == []
    assert ep["public_port"] is None
    assert ep["url"] == "http://127.0.0.1:7860/"


@pytest.mark.parametrize(
    ("kwargs", "variable"),
    [
        ({"exposure": "public"}, "cosyvoice_exposure"),
        ({"exposure": "direct", "server_port": 0}, "cosyvoice_server_port"),
        ({"exposure": "direct", "server_port": 70000}, "cosyvoice_server_port"),
        ({"exposure": "direct", "server_port": "http"}, "cosyvoice_server_port"),
        ({"exposure": "direct", "bind_address": "127.0.0.1"}, "0.0.0.0 pitfall"),
        ({"exposure": "direct", "bind_address": "not a host!"}, "cosyvoice_server_name"),
        ({"exposure": "proxy", "bind_address": "0.0.0.0"}, "around the proxy"),
        ({"exposure": "proxy", "server_port": 443}, "collides"),
        ({"exposure": "proxy", "proxy_https_port": 99999}, "cosyvoice_proxy_https_port"),
        ({"exposure": "direct", "root_path": "/a/../b"}, "cosyvoice_root_path"),
        ({"exposure": "direct", "public_address": "bad_host!"}, "cosyvoice_public_address"),
    ],
)
def test_bad_input_names_the_variable(kwargs, variable):
    exposure = kwargs.pop("exposure")
    with pytest.raises(EndpointError, match=variable.replace(".", r"\.")):
        cosyvoice_endpoint(exposure, **kwargs)


def test_ipv6_urls_are_bracketed():
    assert url_host("2001:db8::1") == "[2001:db8::1]"
    assert build_url("http", "2001:db8::1", 7860) == "http://[2001:db8::1]:7860/"
    assert build_url("https", "example.com", 443, "/tts") == "https://example.com/tts/"
    assert build_url("http", "example.com", 80) == "http://example.com/"


@pytest.mark.parametrize(("raw", "norm"), [("", "/"), ("/", "/"), ("tts", "/tts"), ("/a/b/", "/a/b"), ("//x//", "/x")])
def test_root_path_normalisation(raw, norm):
    assert normalize_root_path(raw) == norm


def test_filters_are_registered():
    names = set(FilterModule().filters())
    assert {"cosyvoice_endpoint", "cosyvoice_url", "cosyvoice_is_host", "cosyvoice_is_loopback"} <= names


@pytest.mark.parametrize("value", ["300.1.1.1", "0.0.0.0.0", "1.2.3", "", "a b", "-x.com"])
def test_not_hosts(value):
    assert not is_host(value)


@pytest.mark.parametrize("value", ["0.0.0.0", "::", "10.0.0.5", "tts.example.com", "gpu-1", "2001:db8::1"])
def test_hosts(value):
    assert is_host(value)


def test_port_auto_is_7860_on_a_vm_and_the_published_port_on_autodl():
    assert cosyvoice_endpoint("direct", server_port="auto", public_address="h")["backend_port"] == 7860
    ep = cosyvoice_endpoint("direct", server_port="auto", public_address="h", platform="autodl")
    assert ep["backend_port"] == 6006
    assert ep["public_ports"] == [{"port": 6006, "proto": "tcp", "purpose": "app"}]
    assert ep["platform"]["container"] is True
    assert "6006" in ep["platform"]["note"]
    assert cosyvoice_endpoint("direct", public_address="h")["platform"] == {
        "name": "generic", "container": False, "published_ports": [], "note": ""}


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"exposure": "direct", "server_port": 7860, "platform": "autodl"}, ["cosyvoice_server_port", "6006"]),
        ({"exposure": "proxy", "platform": "autodl"}, ["cosyvoice_exposure=direct"]),
        ({"exposure": "proxy", "platform": "container"}, ["cosyvoice_exposure=direct"]),
        ({"exposure": "direct", "platform": "runpod"}, ["cosyvoice_platform", "autodl"]),
    ],
)
def test_platform_mistakes_fail_naming_the_variable(kwargs, names):
    exposure = kwargs.pop("exposure")
    with pytest.raises(EndpointError) as err:
        cosyvoice_endpoint(exposure, public_address="h", **kwargs)
    for name in names:
        assert name in str(err.value)


def test_a_generic_container_platform_takes_any_port():
    ep = cosyvoice_endpoint("direct", server_port=8888, public_address="h", platform="container")
    assert ep["backend_port"] == 8888
    assert ep["platform"]["published_ports"] == []


def test_the_platform_note_names_the_port_in_use():
    ep = cosyvoice_endpoint("direct", server_port=6008, public_address="h", platform="autodl")
    assert "port 6008" in ep["platform"]["note"] and "6008:127.0.0.1:6008" in ep["platform"]["note"]
    assert "6006" not in ep["platform"]["note"]
