"""Unit tests for plugins/filter/os_firewall.py: input checks, the rules the role writes, and the
thin status filters over module_utils/firewall_*.py (whose own tests are tests/unit/test_firewall_*.py).

Samples in tests/unit/data/os_firewall/ are real command output captured from
Debian 12 containers (see the README there).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.cosyvoice.deploy.plugins.filter import os_firewall as fw

DATA = Path(__file__).resolve().parent / "data" / "os_firewall"
FIREWALLD_SERVICES = ("dhcpv6-client", "os-firewall-admin", "ssh", "os-firewall-allowed", "http")


def sample(name: str) -> str:
    return (DATA / name).read_text()


def tcp(*numbers: int) -> list[dict[str, Any]]:
    return [{"port": n, "proto": "tcp"} for n in numbers]


def by_port(state: dict[str, Any]) -> dict[tuple[int, str], dict[str, Any]]:
    return {(p["port"], p["proto"]): p for p in state["ports"]}


def firewalld_services() -> dict[str, str]:
    """`firewall-cmd --info-service=NAME` of every service the sample zone uses."""
    return {name: sample(f"firewalld_info_service_{name}.txt") for name in FIREWALLD_SERVICES}


# ---------------------------------------------------------------- input checks
@pytest.mark.parametrize(
    "ports",
    [
        [],
        None,
        [{"port": 7860, "proto": "tcp", "purpose": "app"}],
        [{"port": "443"}, {"port": 1, "proto": "udp"}, {"port": 65535, "proto": "tcp"}],
    ],
)
def test_good_ports_have_no_problems(ports: Any) -> None:
    assert fw.port_problems(ports) == []


@pytest.mark.parametrize(
    ("ports", "fragment"),
    [
        ([{"port": 70000, "proto": "tcp"}], "os_firewall_allowed_ports[0].port = 70000"),
        ([{"port": 0}], "os_firewall_allowed_ports[0].port = 0"),
        ([{"port": True}], "is not a port number"),
        ([{"port": "http"}], "'http' is not a port number"),
        ([{"proto": "tcp"}], "port = None"),
        ([{"port": 80, "proto": "icmp"}], "os_firewall_allowed_ports[0].proto = 'icmp'"),
        ([80], "os_firewall_allowed_ports[0] = 80 is not a dict"),
        ({"port": 80}, "must be a list"),
    ],
)
def test_bad_ports_are_named(ports: Any, fragment: str) -> None:
    problems = fw.port_problems(ports)
    assert len(problems) == 1
    assert fragment in problems[0]
    assert "Fix:" in problems[0]


def test_port_problems_use_the_given_variable_name() -> None:
    assert fw.port_problems([{"port": -1}], "os_firewall_status_ports")[0].startswith("os_firewall_status_ports[0]")


@pytest.mark.parametrize("value", [22, "2222", [22, 2222]])
def test_good_admin_ports(value: Any) -> None:
    assert fw.admin_port_problems(value) == []


@pytest.mark.parametrize("value", [0, 65536, "ssh", [22, None]])
def test_bad_admin_ports(value: Any) -> None:
    problems = fw.admin_port_problems(value, "os_firewall_ssh_port")
    assert len(problems) == 1 and problems[0].startswith("os_firewall_ssh_port contains")


@pytest.mark.parametrize("cidrs", [["0.0.0.0/0", "::/0"], ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"], []])
def test_good_cidrs(cidrs: list[str]) -> None:
    assert fw.cidr_problems(cidrs) == []


@pytest.mark.parametrize(
    ("cidrs", "fragment"),
    [
        (["10.0.0.300/8"], "os_firewall_allowed_cidrs[0] = '10.0.0.300/8' is not a valid CIDR"),
        (["0.0.0.0/0", "10.1.2.3/8"], "did you mean 10.0.0.0/8?"),
        (["example.com"], "'example.com' is not a valid CIDR"),
        ([""], "'' is not a valid CIDR"),
        ([None], "None is not a valid CIDR"),
        ("0.0.0.0/0", "must be a list"),
    ],
)
def test_bad_cidrs_are_named(cidrs: Any, fragment: str) -> None:
    problems = fw.cidr_problems(cidrs)
    assert len(problems) == 1
    assert fragment in problems[0]


# ---------------------------------------------------------------- rules
def test_rules_expand_ports_by_source_and_dedupe() -> None:
    ports = [
        {"port": 7860, "proto": "tcp", "purpose": "app"},
        {"port": "7860", "proto": "tcp", "purpose": "again"},
        {"port": 443},
    ]
    result = fw.rules(ports, ["0.0.0.0/0", "::/0", "192.0.2.7", "0.0.0.0/0"])
    assert [(r["port"], r["proto"], r["src"], r["family"]) for r in result] == [
        (7860, "tcp", "0.0.0.0/0", "ipv4"),
        (7860, "tcp", "::/0", "ipv6"),
        (7860, "tcp", "192.0.2.7/32", "ipv4"),
        (443, "tcp", "0.0.0.0/0", "ipv4"),
        (443, "tcp", "::/0", "ipv6"),
        (443, "tcp", "192.0.2.7/32", "ipv4"),
    ]
    assert result[0]["comment"] == "os_firewall: app"
    assert result[3]["comment"] == "os_firewall: port"


def test_rules_can_be_limited_to_ipv4() -> None:
    result = fw.rules([{"port": 22}], ["0.0.0.0/0", "::/0"], ["ipv4"])
    assert [r["src"] for r in result] == ["0.0.0.0/0"]


def test_comment_is_safe_for_every_backend() -> None:
    assert fw.comment('web "ui"; drop') == "os_firewall: web -ui- drop"
    assert fw.comment(None) == "os_firewall: port"
    assert len(fw.comment("x" * 500)) <= len("os_firewall: ") + 64


def test_admin_ports_add_the_live_session_port_once() -> None:
    assert [p["port"] for p in fw.admin_ports("22", [2222, "22"], "198.51.100.9 50000 172.17.0.5 2200")] == [
        22,
        2222,
        2200,
    ]
    assert fw.admin_ports(22, None, "") == [{"port": 22, "proto": "tcp", "purpose": "admin"}]


# ---------------------------------------------------------------- ufw
def test_ufw_tuples_parse_real_user_rules() -> None:
    tuples = fw.ufw_tuples(sample("ufw_user_rules.txt"))
    assert len(tuples) == 14
    first = tuples[0]
    assert first == {
        "action": "allow",
        "proto": "tcp",
        "dport": "22",
        "dst": "0.0.0.0/0",
        "sport": "any",
        "src": "0.0.0.0/0",
        "direction": "in",
        "interface": "",
        "app": "",
        "family": "ipv4",
        "comment": "os_firewall: ssh",
    }
    eth0 = [t for t in tuples if t["interface"]]
    assert {t["interface"] for t in eth0} == {"eth0"} and len(eth0) == 2
    assert sum(t["family"] == "ipv6" for t in tuples) == 6


def test_ufw_stale_returns_only_labelled_rules_no_longer_wanted() -> None:
    tuples = fw.ufw_tuples(sample("ufw_user_rules.txt"))
    desired = fw.rules([{"port": 22, "purpose": "ssh"}], ["0.0.0.0/0", "::/0"])
    stale = fw.ufw_stale(tuples, desired)
    # 7860 from 10.0.0.0/8 carries the label and is not wanted; 443, 9999, 5000,
    # 2222 and 53 have no label and are never touched.
    assert stale == [
        {"rule": "allow", "proto": "tcp", "port": "7860", "src": "10.0.0.0/8", "comment": "os_firewall: app"}
    ]


def test_ufw_stale_keeps_wanted_rules() -> None:
    tuples = fw.ufw_tuples(sample("ufw_user_rules.txt"))
    desired = fw.rules([{"port": 22}], ["0.0.0.0/0", "::/0"]) + fw.rules([{"port": 7860}], ["10.0.0.0/8"])
    assert fw.ufw_stale(tuples, desired) == []


def test_ufw_status_of_a_real_host() -> None:
    ports = [*tcp(22, 7860, 443, 9999, 5000, 2222, 1234), {"port": 8005, "proto": "udp"}, {"port": 53, "proto": "udp"}]
    state = fw.ufw_status(sample("ufw_status_verbose.txt"), sample("ufw_user_rules.txt"), ports)
    assert state["active"] is True and state["default_incoming"] == "deny" and state["managed"] is True
    result = by_port(state)
    assert result[(22, "tcp")]["scope"] == "any"
    assert result[(7860, "tcp")]["scope"] == "some"  # only from 10.0.0.0/8
    assert result[(7860, "tcp")]["families"] == {"ipv4": "some", "ipv6": "none"}
    assert result[(443, "tcp")]["scope"] == "some"  # only from 192.168.1.5
    assert result[(9999, "tcp")]["allowed"] is False  # explicit deny
    assert result[(5000, "tcp")]["scope"] == "some"  # only on eth0
    assert result[(2222, "tcp")]["scope"] == "any"  # limit = allow, rate-limited
    assert result[(8005, "udp")]["scope"] == "any"  # inside 8000:8010
    assert result[(53, "udp")]["scope"] == "any"  # proto any
    assert result[(1234, "tcp")]["allowed"] is False  # default deny


def test_ufw_status_inactive_allows_everything() -> None:
    state = fw.ufw_status("Status: inactive\n", "", tcp(7860))
    assert state["active"] is False and state["ports"][0]["allowed"] is True


def test_ufw_status_default_allow_with_a_deny_rule() -> None:
    text = "Status: active\nDefault: allow (incoming), allow (outgoing), disabled (routed)\n"
    rules = "### tuple ### deny tcp 9999 0.0.0.0/0 any 0.0.0.0/0 in\n"
    result = by_port(fw.ufw_status(text, rules, tcp(9999, 80)))
    assert result[(9999, "tcp")]["families"] == {"ipv4": "none", "ipv6": "any"}
    assert result[(80, "tcp")]["scope"] == "any"


# ---------------------------------------------------------------- firewalld
def test_firewalld_rich_rules_in_firewalld_spelling() -> None:
    desired = fw.rules(tcp(7860, 7861), ["0.0.0.0/0", "::/0", "10.0.0.0/8"])
    assert fw.firewalld_rich_rules(desired, "os-firewall-allowed") == [
        'rule family="ipv4" source address="0.0.0.0/0" service name="os-firewall-allowed" accept',
        'rule family="ipv4" source address="10.0.0.0/8" service name="os-firewall-allowed" accept',
        'rule family="ipv6" source address="::/0" service name="os-firewall-allowed" accept',
    ]


def test_firewalld_stale_touches_only_the_roles_services() -> None:
    current = [
        'rule family="ipv4" source address="0.0.0.0/0" service name="os-firewall-allowed" accept',
        'rule family="ipv4" source address="10.0.0.0/8" service name="os-firewall-allowed" accept',
        'rule family="ipv4" source address="10.1.0.0/16" port port="5432" protocol="tcp" accept',
        'rule family="ipv4" source address="192.0.2.0/24" service name="http" accept',
    ]
    desired = ['rule family="ipv4" source address="0.0.0.0/0" service name="os-firewall-allowed" accept']
    assert fw.firewalld_stale(current, desired) == [current[1]]
    assert fw.firewalld_stale(current, [*desired, current[1]]) == []


def test_firewalld_status_of_a_real_zone() -> None:
    """public zone with the role's services plus hand-made ports and rich rules."""
    ports = [*tcp(22, 7860, 8080, 5432, 80, 9999), {"port": 6005, "proto": "udp"}, {"port": 546, "proto": "udp"}]
    state = fw.firewalld_status(sample("firewalld_list_all_public.txt"), ports, firewalld_services())
    assert state["active"] is True and state["managed"] is True and state["default_incoming"] == "reject"
    result = by_port(state)
    # `rule family="ipv4" source address="192.0.2.0/24" drop` blocks that network from every port.
    assert result[(22, "tcp")]["families"] == {"ipv4": "some", "ipv6": "any"}  # ssh + os-firewall-admin
    assert result[(7860, "tcp")]["families"] == {"ipv4": "some", "ipv6": "any"}  # os-firewall-allowed rich rules
    assert result[(8080, "tcp")]["scope"] == "any"  # plain port
    assert result[(6005, "udp")]["scope"] == "any"  # port range 6000-6010
    assert result[(5432, "tcp")]["families"] == {"ipv4": "some", "ipv6": "none"}  # rich rule from 10.1.0.0/16
    assert result[(80, "tcp")]["families"] == {"ipv4": "some", "ipv6": "none"}  # http service from 198.51.100.0/24
    assert result[(546, "udp")]["families"] == {"ipv4": "none", "ipv6": "some"}  # dhcpv6-client: destination fe80::/64
    assert result[(9999, "tcp")]["allowed"] is False


def test_firewalld_status_without_hand_made_rules() -> None:
    listing = "\n".join(
        line for line in sample("firewalld_list_all_public.txt").splitlines() if "192.0.2.0/24" not in line
    )
    result = by_port(fw.firewalld_status(listing, tcp(22, 7860, 7861), firewalld_services()))
    assert result[(22, "tcp")]["families"] == {"ipv4": "any", "ipv6": "any"}
    assert result[(7860, "tcp")]["families"] == {"ipv4": "any", "ipv6": "any"}
    assert result[(7861, "tcp")]["allowed"] is False


def test_firewalld_deny_rich_rule_wins_over_a_port() -> None:
    listing = (
        "public\n  target: default\n  ports: 80/tcp\n  rich rules: \n"
        '\trule family="ipv4" port port="80" protocol="tcp" drop\n'
    )
    result = by_port(fw.firewalld_status(listing, tcp(80)))
    assert result[(80, "tcp")]["families"] == {"ipv4": "none", "ipv6": "any"}


def test_firewalld_accept_target_allows_everything() -> None:
    listing = "trusted\n  target: ACCEPT\n  services: \n"
    assert fw.firewalld_status(listing, tcp(12345))["ports"][0]["scope"] == "any"


def test_firewalld_unknown_service_is_unknown() -> None:
    listing = "public\n  target: default\n  services: mystery\n"
    assert fw.firewalld_status(listing, tcp(80))["ports"][0]["allowed"] is None


# ---------------------------------------------------------------- nftables
def test_nft_status_of_the_roles_own_table() -> None:
    state = fw.nft_status(
        sample("nft_ruleset_os_firewall.json"), [*tcp(22, 7860, 7861, 9999), {"port": 7860, "proto": "udp"}]
    )
    assert state["active"] is True and state["managed"] is True and state["default_incoming"] == "drop"
    result = by_port(state)
    assert result[(22, "tcp")]["scope"] == "any"
    assert result[(7860, "tcp")]["scope"] == "any"
    assert result[(7861, "tcp")]["allowed"] is False
    assert result[(9999, "tcp")]["allowed"] is False
    assert result[(7860, "udp")]["allowed"] is False


def test_nft_status_is_unknown_for_iptables_nft_compat_rules() -> None:
    """ufw through iptables-nft uses xt matches the evaluator cannot model: say unknown, never guess."""
    state = fw.nft_status(sample("nft_ruleset_iptables_nft_ufw.json"), tcp(22, 1234))
    assert {p["scope"] for p in state["ports"]} == {"unknown"}
    assert all(p["allowed"] is None for p in state["ports"])


def _ruleset(*objects: dict[str, Any]) -> str:
    return json.dumps({"nftables": list(objects)})


def _chain(name: str, family: str = "inet", table: str = "t", **base: Any) -> dict[str, Any]:
    chain = {"family": family, "table": table, "name": name, "handle": 1}
    chain.update(base)
    return {"chain": chain}


def _rule(chain: str, *expr: dict[str, Any], family: str = "inet", table: str = "t") -> dict[str, Any]:
    return {"rule": {"family": family, "table": table, "chain": chain, "handle": 2, "expr": list(expr)}}


def _dport(value: Any, proto: str = "tcp", op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": {"payload": {"protocol": proto, "field": "dport"}}, "right": value}}


def _saddr(addr: str, length: int) -> dict[str, Any]:
    prefix = {"prefix": {"addr": addr, "len": length}}
    return {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": prefix}}


INPUT_DROP: dict[str, Any] = {"type": "filter", "hook": "input", "prio": 0, "policy": "drop"}
INPUT_ACCEPT: dict[str, Any] = {"type": "filter", "hook": "input", "prio": 0, "policy": "accept"}


def test_nft_sets_ranges_and_jumps() -> None:
    text = _ruleset(
        _chain("input", **INPUT_DROP),
        _chain("web"),
        {
            "set": {
                "family": "inet",
                "table": "t",
                "name": "admin",
                "type": "inet_service",
                "handle": 3,
                "elem": [22, {"range": [2200, 2299]}],
            }
        },
        _rule("input", _dport("@admin"), {"accept": None}),
        _rule("input", _dport({"set": [80, 443]}), {"jump": {"target": "web"}}),
        _rule("web", _saddr("10.0.0.0", 8), {"accept": None}),
        _rule("web", _dport(443), {"accept": None}),
    )
    result = by_port(fw.nft_status(text, tcp(22, 2222, 80, 443, 8080)))
    assert result[(22, "tcp")]["scope"] == "any"
    assert result[(2222, "tcp")]["scope"] == "any"
    assert result[(80, "tcp")]["families"] == {"ipv4": "some", "ipv6": "none"}
    assert result[(443, "tcp")]["scope"] == "any"
    assert result[(8080, "tcp")]["allowed"] is False


def test_nft_every_input_chain_must_accept() -> None:
    text = _ruleset(
        _chain("mine", table="a", **INPUT_DROP),
        _rule("mine", _dport(7860), {"accept": None}, table="a"),
        _chain("theirs", table="b", **INPUT_ACCEPT),
        _rule("theirs", _dport(7860), {"drop": None}, table="b"),
    )
    assert fw.nft_status(text, tcp(7860))["ports"][0]["allowed"] is False


def test_nft_unmodelled_statement_makes_the_answer_unknown() -> None:
    text = _ruleset(
        _chain("input", **INPUT_DROP),
        _rule("input", {"xt": {"type": "match", "name": "multiport"}}, {"accept": None}),
    )
    assert fw.nft_status(text, tcp(80))["ports"][0]["scope"] == "unknown"


def test_nft_without_input_chains_filters_nothing() -> None:
    text = _ruleset(_chain("out", type="filter", hook="output", prio=0, policy="drop"))
    state = fw.nft_status(text, tcp(80))
    assert state["active"] is False and state["ports"][0]["allowed"] is True


def test_nft_unreadable_output_is_unknown() -> None:
    assert fw.nft_status("not json", tcp(80))["ports"][0]["allowed"] is None


# ---------------------------------------------------------------- status helpers
def test_no_firewall_and_unknown_status() -> None:
    assert fw.no_firewall_status(tcp(7860))["ports"][0]["allowed"] is True
    unknown = fw.unknown_status(tcp(7860), "no root")
    assert unknown["ports"][0] == {
        "port": 7860,
        "proto": "tcp",
        "allowed": None,
        "scope": "unknown",
        "families": {"ipv4": "unknown", "ipv6": "unknown"},
        "reason": "no root",
    }


def test_status_filters_have_the_shape_of_the_fact() -> None:
    state = fw.nft_status(sample("nft_ruleset_os_firewall.json"), tcp(7860))
    assert {
        "backend",
        "active",
        "managed",
        "default_incoming",
        "allowed_ports",
        "ports",
        "foreign_blocks",
        "posture",
    } <= set(state)


def test_filters_are_registered() -> None:
    names = fw.FilterModule().filters()
    assert {
        "os_firewall_port_problems",
        "os_firewall_cidr_problems",
        "os_firewall_rules",
        "os_firewall_unique_ports",
        "os_firewall_admin_ports",
        "os_firewall_ufw_tuples",
        "os_firewall_ufw_stale",
        "os_firewall_firewalld_rich_rules",
        "os_firewall_firewalld_stale",
        "os_firewall_ufw_status",
        "os_firewall_firewalld_status",
        "os_firewall_nft_status",
    } <= set(names)
    assert "os_firewall_host_status" not in names  # the private probe format is gone: use os_firewall_facts


def test_ufw_missing_skips_rules_ufw_already_holds() -> None:
    """A converged host: no ufw module run per rule (the rules are read in one module run)."""
    tuples = fw.ufw_tuples(sample("ufw_user_rules.txt"))
    held = fw.rules([{"port": 7860, "purpose": "app"}], ["10.0.0.0/8"])
    assert fw.ufw_missing(held, tuples) == []
    wanted = fw.rules([{"port": 7860, "purpose": "app"}], ["10.0.0.0/8", "192.168.0.0/16", "::/0"])
    assert [(r["port"], r["src"]) for r in fw.ufw_missing(wanted, tuples)] == [(7860, "192.168.0.0/16"), (7860, "::/0")]


def test_ufw_missing_counts_other_comment_action_or_shape_as_missing() -> None:
    """ufw updates a rule whose comment differs; a deny or an interface-bound rule is not the allow rule."""
    tuples = fw.ufw_tuples(sample("ufw_user_rules.txt"))
    relabelled = fw.rules([{"port": 7860, "purpose": "other"}], ["10.0.0.0/8"])
    assert fw.ufw_missing(relabelled, tuples) == relabelled
    denied = fw.rules([{"port": 9999, "purpose": "x"}], ["0.0.0.0/0"])  # the sample denies 9999
    assert fw.ufw_missing(denied, tuples) == denied
    on_eth0 = fw.rules([{"port": 5000, "purpose": "x"}], ["0.0.0.0/0"])  # the sample allows 5000 on eth0 only
    assert fw.ufw_missing(on_eth0, tuples) == on_eth0
    assert fw.ufw_missing(on_eth0, []) == on_eth0
