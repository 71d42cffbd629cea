"""Unit tests for plugins/module_utils/firewall_ufw.py and firewall_firewalld.py (parsers and their chains)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.cosyvoice.deploy.plugins.module_utils import firewall_firewalld as fwd
from ansible_collections.cosyvoice.deploy.plugins.module_utils import firewall_ufw as ufw
from ansible_collections.cosyvoice.deploy.plugins.module_utils.firewall_model import (
    Action,
    Owner,
    Packet,
    Reach,
    evaluate,
)

DATA = Path(__file__).resolve().parent / "data" / "os_firewall"
SERVICES = ("dhcpv6-client", "os-firewall-admin", "ssh", "os-firewall-allowed", "http")


def sample(name: str) -> str:
    return (DATA / name).read_text()


def tcp(port: int, family: str = "ipv4") -> Packet:
    return Packet(family, "tcp", port)


# ---------------------------------------------------------------- ufw
def test_ufw_status_header() -> None:
    assert ufw.parse_status(sample("ufw_status_verbose.txt")) == ufw.UfwStatus(True, "deny")
    assert ufw.parse_status("Status: inactive\n") == ufw.UfwStatus(False, None)
    assert ufw.parse_status("ERROR: You need to be root to run this script\n").active is False


def test_ufw_ipv6_setting() -> None:
    assert ufw.ipv6_enabled('# comment\nIPV6=yes\nDEFAULT_INPUT_POLICY="DROP"\n')
    assert ufw.ipv6_enabled('IPV6="yes"\n')
    assert not ufw.ipv6_enabled("IPV6=no\n") and not ufw.ipv6_enabled(None)


def test_ufw_tuples_of_the_role_and_a_foreign_rule_host() -> None:
    tuples = ufw.ufw_tuples(sample("ufw_foreign_user_rules.txt"))
    assert [(t["dport"], t["src"], t["comment"]) for t in tuples] == [
        ("22", "0.0.0.0/0", "os_firewall: admin"),
        ("7860", "0.0.0.0/0", "os_firewall: app"),
        ("22", "::/0", "os_firewall: admin"),
        ("7860", "::/0", "os_firewall: app"),
    ]
    assert ufw.managed(tuples) and not ufw.managed(
        ufw.ufw_tuples("### tuple ### allow tcp 80 0.0.0.0/0 any 0.0.0.0/0 in")
    )


def test_ufw_tuples_ignore_malformed_lines() -> None:
    assert ufw.ufw_tuples("### tuple ### allow tcp 80\n-A ufw-user-input -j ACCEPT\n") == []


@pytest.mark.parametrize(
    ("line", "packet", "expected"),
    [
        ("allow tcp 7860 0.0.0.0/0 any 0.0.0.0/0 in", tcp(7860), Reach.ANY),
        ("allow tcp 7860 0.0.0.0/0 any 10.0.0.0/8 in", tcp(7860), Reach.SOME),
        ("allow tcp 7860 0.0.0.0/0 any 0.0.0.0/0 in_eth0", tcp(7860), Reach.SOME),
        ("allow tcp 7860 0.0.0.0/0 1024 0.0.0.0/0 in", tcp(7860), Reach.SOME),
        ("allow tcp 7860 0.0.0.0/0 any 0.0.0.0/0 out", tcp(7860), Reach.NONE),
        ("allow tcp 7860 0.0.0.0/0 any 0.0.0.0/0 in", tcp(7860, "ipv6"), Reach.NONE),
        ("allow udp 7860 0.0.0.0/0 any 0.0.0.0/0 in", tcp(7860), Reach.NONE),
        ("allow any 7000:8000 0.0.0.0/0 any 0.0.0.0/0 in", tcp(7860), Reach.ANY),
    ],
)
def test_ufw_tuple_reach(line: str, packet: Packet, expected: Reach) -> None:
    (item,) = ufw.ufw_tuples(f"### tuple ### {line}")
    assert ufw.tuple_reach(item, packet) is expected


def test_ufw_layer_first_match_then_default() -> None:
    tuples = ufw.ufw_tuples(sample("ufw_user_rules.txt"))
    layer = ufw.layer(tuples, "deny")
    assert evaluate(layer, tcp(22)).reach is Reach.ANY
    assert evaluate(layer, tcp(9999)).reach is Reach.NONE  # explicit deny
    assert evaluate(layer, tcp(1234)).reach is Reach.NONE  # default
    assert evaluate(ufw.layer([], "allow"), tcp(1234)).reach is Reach.ANY
    step = layer.steps("rules", tcp(22))[0]
    assert (step.action, step.rule.owner, step.rule.text) == (
        Action.ACCEPT,
        Owner.UFW,
        "allow tcp 22 from 0.0.0.0/0 in",
    )


# ---------------------------------------------------------------- firewalld
def services() -> dict[str, fwd.Service]:
    return {name: fwd.parse_service(sample(f"firewalld_info_service_{name}.txt")) for name in SERVICES}


def test_firewalld_zone_listing() -> None:
    zone = fwd.parse_zone(sample("firewalld_list_all_public.txt"))
    assert zone is not None
    assert (zone.name, zone.target) == ("public", "default")
    assert zone.services == ["dhcpv6-client", "os-firewall-admin", "ssh"]
    assert zone.ports == ["8080/tcp", "6000-6010/udp"]
    assert len(zone.rich_rules) == 5
    assert fwd.referenced_services(zone) == ["dhcpv6-client", "os-firewall-admin", "ssh", "os-firewall-allowed", "http"]
    assert fwd.managed(zone)
    assert fwd.target_of(zone) == (Action.REJECT, "reject")


def test_firewalld_zone_name_with_active_marker_and_empty_output() -> None:
    zone = fwd.parse_zone("public (active)\n  target: DROP\n  interfaces: eth0\n")
    assert zone is not None and (zone.name, fwd.target_of(zone)) == ("public", (Action.DROP, "drop"))
    assert fwd.parse_zone("") is None


def test_firewalld_service_info() -> None:
    assert services()["dhcpv6-client"] == fwd.Service(("546/udp",), (), ("ipv6:fe80::/64",))
    assert services()["http"] == fwd.Service(("80/tcp",), (), ())


def test_rich_rule_parsing() -> None:
    rule = fwd.parse_rich_rule(
        'rule family="ipv4" source NOT address="10.0.0.0/8" port port="5432" protocol="tcp" reject'
    )
    assert (rule.family, rule.source, rule.port, rule.verdict) == (
        "ipv4",
        (True, "address", "10.0.0.0/8"),
        ("5432", "tcp"),
        "reject",
    )
    assert rule.limits_source()
    assert not fwd.parse_rich_rule('rule family="ipv6" source address="::/0" service name="x" accept').limits_source()


@pytest.mark.parametrize(
    ("rule", "packet", "expected"),
    [
        ('rule family="ipv4" source address="192.0.2.0/24" drop', tcp(80), Reach.SOME),
        ('rule family="ipv4" port port="80" protocol="tcp" drop', tcp(80), Reach.ANY),
        ('rule family="ipv4" port port="80" protocol="tcp" drop', tcp(80, "ipv6"), Reach.NONE),
        ('rule protocol value="tcp" accept', tcp(80), Reach.ANY),
        ('rule family="ipv4" icmp-block name="echo-request"', tcp(80), Reach.NONE),
        ('rule family="ipv4" source-port port="53" protocol="udp" accept', tcp(80), Reach.NONE),
        ('rule family="ipv4" source-port port="1024-2048" protocol="tcp" accept', tcp(80), Reach.SOME),
        (
            'rule family="ipv4" destination address="192.0.2.1" port port="80" protocol="tcp" accept',
            tcp(80),
            Reach.SOME,
        ),
        ('rule service name="unknown-svc" accept', tcp(80), Reach.UNKNOWN),
        ('rule service name="http" accept', tcp(80), Reach.ANY),
    ],
)
def test_rich_rule_reach(rule: str, packet: Packet, expected: Reach) -> None:
    assert fwd.rich_reach(fwd.parse_rich_rule(rule), services(), packet) is expected


def test_firewalld_zone_order_deny_rich_first() -> None:
    zone = fwd.parse_zone(sample("firewalld_list_all_public.txt"))
    assert zone is not None
    steps = fwd.zone_steps(zone, services(), tcp(22))
    assert steps[0].action is Action.DROP and "192.0.2.0/24" in steps[0].rule.text
    assert [s.rule.text for s in steps[1:3]] == ["ports", "protocols"]
    assert steps[-1].action is Action.ACCEPT and all(s.rule.owner is Owner.FIREWALLD for s in steps)
    layer = fwd.layer(zone, services())
    assert evaluate(layer, tcp(22)).reach is Reach.SOME  # ssh, but 192.0.2.0/24 is dropped first
    assert evaluate(layer, tcp(22, "ipv6")).reach is Reach.ANY
    assert evaluate(layer, Packet("ipv6", "udp", 546)).reach is Reach.SOME
