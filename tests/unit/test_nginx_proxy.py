"""Unit tests for filter_plugins/nginx_proxy.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_PLUGIN = Path(__file__).resolve().parents[2] / "filter_plugins" / "nginx_proxy.py"




from ansible_collections.cosyvoice.deploy.plugins.filter import nginx_proxy as np  # noqa: E402


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("tts.example.com", "dns"),
        ("cv-proxy", "dns"),
        ("localhost", "dns"),
        ("*.example.com", "wildcard"),
        ("203.0.113.7", "ip"),
        ("2001:db8::1", "ip"),
        ("*", None),
        ("*.com.", None),
        ("foo.*.example.com", None),
        ("-bad.example.com", None),
        ("bad-.example.com", None),
        ("under_score.example.com", None),
        ("two words", None),
        ("a" * 64 + ".example.com", None),
        ("", None),
        (None, None),
        (7, None),
    ],
)
def test_server_name_kind(name: object, kind: str | None) -> None:
    assert np.server_name_kind(name) == kind


def test_server_name_problems_ok() -> None:
    assert np.server_name_problems(["172.17.0.2", "cv-proxy", "*.example.com"]) == []


@pytest.mark.parametrize("names", [[], None, "tts.example.com", {}])
def test_server_name_problems_not_a_list(names: object) -> None:
    (problem,) = np.server_name_problems(names)
    assert "nginx_proxy_server_names must be a non-empty list" in problem


def test_server_name_problems_names_the_bad_entry() -> None:
    (problem,) = np.server_name_problems(["ok.example.com", "bad name"])
    assert "'bad name'" in problem and "nginx_proxy_server_names" in problem


def test_subject_alt_names() -> None:
    assert np.subject_alt_names(["203.0.113.7", "TTS.example.com", "2001:0db8::0001", "tts.example.com"]) == [
        "IP:203.0.113.7",
        "DNS:tts.example.com",
        "IP:2001:db8::1",
    ]


def test_subject_alt_names_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="not a host name"):
        np.subject_alt_names(["ok", "no/slash"])


def test_acme_domains_keeps_fully_qualified_dns_names_only() -> None:
    # "cv" stands for the inventory_hostname site.yml adds to the server names: an
    # ACME CA refuses a name without a dot, so it is not requested.
    assert np.acme_domains(["203.0.113.7", "tts.example.com", "*.example.com", "cv"]) == ["tts.example.com"]
    assert np.acme_domains(["tts.cosyvoice.test", "cv-acme"]) == ["tts.cosyvoice.test"]
    assert np.acme_domains(["cv"]) == []
    assert np.acme_domains(None) == []


def test_acme_domain_problems() -> None:
    assert np.acme_domain_problems(["tts.example.com"]) == []
    assert "is empty" in np.acme_domain_problems([])[0]
    problems = np.acme_domain_problems(["203.0.113.7", "*.example.com", "gpu-1"])
    assert len(problems) == 3 and all("http-01" in p for p in problems)
    assert "'gpu-1'" in problems[2]


def test_auth_problems_ok() -> None:
    assert np.auth_problems([{"name": "alice", "password": "s3cret"}, {"name": "bob", "password": "x"}]) == []
    assert np.auth_problems([]) == []


@pytest.mark.parametrize(
    ("users", "expected"),
    [
        ("alice", "must be a list"),
        (["alice"], "[0] must be a mapping"),
        ([{"name": "a:b", "password": "p"}], "without ':'"),
        ([{"name": "", "password": "p"}], "without ':'"),
        ([{"password": "p"}], "without ':'"),
        ([{"name": "alice", "password": ""}], "(alice): password is empty"),
        ([{"name": "alice"}], "password is empty"),
        ([{"name": "alice", "password": "a\nb"}], "line break"),
        ([{"name": "a", "password": "p"}, {"name": "a", "password": "q"}], "duplicate"),
        ([{"name": "a", "password": "p", "pass": "x"}], "unknown keys pass"),
    ],
)
def test_auth_problems(users: object, expected: str) -> None:
    problems = np.auth_problems(users)
    assert any(expected in p for p in problems), problems


def test_auth_problems_never_echo_a_password() -> None:
    secret = "hunter2-very-secret"
    users = [{"name": "bad name", "password": secret}, {"name": "ok", "password": secret + "\n"}]
    problems = np.auth_problems(users)
    assert len(problems) == 2
    assert all(secret not in p for p in problems)


def test_filter_module_exports() -> None:
    filters = np.FilterModule().filters()
    assert set(filters) == {
        "nginx_proxy_server_name_problems",
        "nginx_proxy_acme_domain_problems",
        "nginx_proxy_acme_domains",
        "nginx_proxy_subject_alt_names",
        "nginx_proxy_selfsigned_current",
        "nginx_proxy_auth_problems",
    }


def _cert_info(**over):
    info = {
        "failed": False,
        "public_key_fingerprints": {"sha256": "aa:bb"},
        "valid_at": {"renew": True},
        "subject": {"commonName": "172.17.0.2"},
        "issuer": {"commonName": "172.17.0.2"},
        "subject_alt_name": ["IP:172.17.0.2", "DNS:cv-demo"],
        "subject_alt_name_critical": False,
        "basic_constraints": ["CA:FALSE"],
        "extended_key_usage": ["TLS Web Server Authentication"],
    }
    info.update(over)
    return info


def test_selfsigned_current_only_when_the_certificate_is_what_the_role_would_issue():
    key = {"fingerprint": {"sha256": "aa:bb"}}
    names = ["172.17.0.2", "cv-demo"]
    assert np.selfsigned_current(_cert_info(), key, names) is True
    assert np.selfsigned_current(_cert_info(), key, ["cv-demo", "172.17.0.2"]) is False  # other common name
    assert np.selfsigned_current(_cert_info(), {"fingerprint": {"sha256": "cc"}}, names) is False  # new key
    assert np.selfsigned_current(_cert_info(valid_at={"renew": False}), key, names) is False  # renewal window
    assert np.selfsigned_current(_cert_info(subject_alt_name=["IP:172.17.0.2"]), key, names) is False
    assert np.selfsigned_current(_cert_info(issuer={"commonName": "Some CA"}), key, names) is False
    assert np.selfsigned_current(_cert_info(basic_constraints=["CA:TRUE"]), key, names) is False
    assert np.selfsigned_current(_cert_info(extended_key_usage=["clientAuth"]), key, names) is False
    assert np.selfsigned_current({"failed": True, "msg": "No such file"}, key, names) is False  # no certificate
    assert np.selfsigned_current(_cert_info(), {"skipped": True}, names) is False  # check mode, no key yet
    assert np.selfsigned_current(_cert_info(), key, ["bad name!"]) is False
