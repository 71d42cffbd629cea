"""Unit tests for plugins/module_utils/firewall_nft.py: `nft -j list ruleset` as a layer.

Real rulesets from tests/unit/data/os_firewall/ (see the README there) plus small hand-made ones.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.cosyvoice.deploy.plugins.module_utils import firewall_nft as nft
from ansible_collections.cosyvoice.deploy.plugins.module_utils.firewall_model import (
    Action,
    Owner,
    Packet,
    Reach,
    evaluate,
)

DATA = Path(__file__).resolve().parent / "data" / "os_firewall"
V4 = Packet("ipv4", "tcp", 7860)
V6 = Packet("ipv6", "tcp", 7860)


def sample(name: str) -> str:
    return (DATA / name).read_text()


def ruleset(name: str, **compat: str) -> nft.NftRuleset:
    loaded = nft.NftRuleset.from_json(sample(name), {family: sample(file) for family, file in compat.items()})
    assert loaded is not None
    return loaded


def reach(layer: Any, packet: Packet) -> Reach:
    result = evaluate(layer, packet)
    assert result is not None
    return result.reach


def _dport(value: Any, proto: str = "tcp", op: str = "==") -> dict[str, Any]:
    return {"op": op, "left": {"payload": {"protocol": proto, "field": "dport"}}, "right": value}


NO_SETS = lambda _name: None  # noqa: E731


# ---------------------------------------------------------------- matches
@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        (_dport(7860), Reach.ANY),
        (_dport(7861), Reach.NONE),
        (_dport(7860, op="!="), Reach.NONE),
        (_dport(7860, proto="udp"), Reach.NONE),  # `udp dport` implies udp
        (_dport(7860, proto="udp", op="!="), Reach.NONE),  # ... whatever the operator
        (_dport({"set": [80, 7860]}), Reach.ANY),
        (_dport({"range": [7000, 8000]}), Reach.ANY),
        (_dport("@missing"), Reach.UNKNOWN),
        ({"op": "==", "left": {"payload": {"protocol": "tcp", "field": "sport"}}, "right": 1}, Reach.SOME),
        (
            {
                "op": "==",
                "left": {"payload": {"protocol": "ip", "field": "saddr"}},
                "right": {"prefix": {"addr": "0.0.0.0", "len": 0}},
            },
            Reach.ANY,
        ),
        (
            {
                "op": "==",
                "left": {"payload": {"protocol": "ip", "field": "saddr"}},
                "right": {"prefix": {"addr": "10.0.0.0", "len": 8}},
            },
            Reach.SOME,
        ),
        ({"op": "==", "left": {"payload": {"protocol": "ip6", "field": "saddr"}}, "right": "::1"}, Reach.NONE),
        ({"op": "==", "left": {"payload": {"protocol": "icmp", "field": "type"}}, "right": "echo-request"}, Reach.NONE),
        ({"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "lo"}, Reach.NONE),
        ({"op": "!=", "left": {"meta": {"key": "iifname"}}, "right": "lo"}, Reach.ANY),
        ({"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "eth0"}, Reach.SOME),
        ({"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": {"set": [1, 58]}}, Reach.NONE),
        ({"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": 6}, Reach.ANY),
        ({"op": "==", "left": {"meta": {"key": "nfproto"}}, "right": "ipv6"}, Reach.NONE),
        ({"op": "in", "left": {"ct": {"key": "state"}}, "right": ["established", "related"]}, Reach.NONE),
        ({"op": "in", "left": {"ct": {"key": "state"}}, "right": "new"}, Reach.ANY),
        ({"op": "==", "left": {"ct": {"key": "mark"}}, "right": 1}, Reach.UNKNOWN),
        ({"op": "<", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 1024}, Reach.UNKNOWN),
        ({"op": "==", "left": {"fib": {"result": "type"}}, "right": "local"}, Reach.UNKNOWN),
    ],
)
def test_match_reach(expr: dict[str, Any], expected: Reach) -> None:
    assert nft.match_reach(expr, V4, NO_SETS) is expected


@pytest.mark.parametrize(
    ("name", "body", "expected"),
    [
        ("accept", None, (Action.ACCEPT, None)),
        ("reject", {"type": "icmpx"}, (Action.REJECT, None)),
        ("jump", {"target": "web"}, (Action.JUMP, "web")),
        ("vmap", {}, (Action.UNKNOWN, None)),
        ("counter", {"packets": 0, "bytes": 0}, (Action.CONTINUE, None)),
        ("xt", {"type": "target", "name": "REJECT"}, (Action.REJECT, None)),
        ("xt", {"type": "target", "name": "LOG"}, (Action.CONTINUE, None)),
        ("xt", {"type": "target", "name": "TPROXY"}, (Action.UNKNOWN, None)),
        ("xt", {"type": "match", "name": "multiport"}, None),
        ("fib", {}, None),
    ],
)
def test_statements_are_classified_by_table(name: str, body: Any, expected: Any) -> None:
    assert nft.statement(name, body) == expected


def test_scan_stops_at_the_first_verdict_and_at_a_mismatch() -> None:
    exprs = [{"match": _dport(7860)}, {"counter": None}, {"drop": None}, {"accept": None}]
    assert nft.scan(exprs, V4, NO_SETS) == (Reach.ANY, Action.DROP, None)
    assert nft.scan([{"match": _dport(1)}, {"drop": None}], V4, NO_SETS) == (Reach.NONE, Action.CONTINUE, None)
    xt = [{"xt": {"type": "match", "name": "recent"}}, {"drop": None}]
    assert nft.scan(xt, V4, NO_SETS) == (Reach.UNKNOWN, Action.DROP, None)


def test_rule_text_reads_like_nft_without_counters() -> None:
    rule = {
        "expr": [
            {
                "match": {
                    "op": "==",
                    "left": {"payload": {"protocol": "ip", "field": "saddr"}},
                    "right": {"prefix": {"addr": "10.0.0.0", "len": 8}},
                }
            },
            {"match": _dport({"set": [80, {"range": [8000, 8010]}]})},
            {"match": {"op": "!=", "left": {"meta": {"key": "iifname"}}, "right": "lo"}},
            {"counter": {"packets": 3, "bytes": 180}},
            {"jump": {"target": "web"}},
        ],
        "comment": "hand-made",
    }
    assert (
        nft.render(rule)
        == 'ip saddr 10.0.0.0/8 tcp dport { 80, 8000-8010 } meta iifname != lo jump web comment "hand-made"'
    )


# ---------------------------------------------------------------- real rulesets
def test_the_roles_own_table() -> None:
    rules = ruleset("nft_ruleset_os_firewall.json")
    assert rules.managed() and rules.has_table("inet", "os_firewall")
    assert reach(rules, Packet("ipv4", "tcp", 22)) is Reach.ANY
    assert reach(rules, V6) is Reach.ANY
    assert reach(rules, Packet("ipv6", "udp", 7860)) is Reach.NONE
    assert {r.owner for refs in rules.refs.values() for r in refs} == {Owner.OS_FIREWALL}


def test_iptables_nft_rules_are_foreign_with_handles_and_remove_commands() -> None:
    rules = ruleset("nft_ruleset_iptables_nft_foreign.json")
    first = rules.refs[("ip", "filter", "INPUT")][0]
    assert (first.owner, first.handle, first.position, first.text) == (Owner.FOREIGN, 2, 1, "tcp dport 7860 drop")
    assert first.remove_command == "nft delete rule ip filter INPUT handle 2"
    assert reach(rules, V4) is Reach.NONE and reach(rules, V6) is Reach.NONE
    assert reach(rules, Packet("ipv4", "tcp", 9999)) is Reach.UNKNOWN  # the multiport xt match, not paired


def test_xt_rules_are_classified_from_iptables_nft_save() -> None:
    rules = ruleset(
        "nft_ruleset_iptables_nft_foreign.json",
        ipv4="iptables_nft_save_foreign.txt",
        ipv6="ip6tables_nft_save_foreign.txt",
    )
    multiport = rules.refs[("ip", "filter", "INPUT")][2]
    assert multiport.text == "-A INPUT -p tcp -m multiport --dports 80,443 -j DROP"
    assert multiport.remove_command == "nft delete rule ip filter INPUT handle 4"
    assert reach(rules, Packet("ipv4", "tcp", 443)) is Reach.NONE
    assert reach(rules, Packet("ipv4", "tcp", 9999)) is Reach.ANY
    assert reach(rules, Packet("ipv4", "tcp", 8080)) is Reach.SOME  # REJECT from 10.0.0.0/8 only
    assert reach(rules, Packet("ipv4", "tcp", 22)) is Reach.SOME  # -m recent: only sources that knock too often


def test_pairing_needs_the_same_number_of_rules() -> None:
    short = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp -m multiport --dports 80,443 -j DROP\nCOMMIT\n"
    rules = nft.NftRuleset.from_json(sample("nft_ruleset_iptables_nft_foreign.json"), {"ipv4": short})
    assert rules is not None and not rules.compat


def test_ufw_chains_through_iptables_nft_belong_to_ufw() -> None:
    rules = ruleset("nft_ruleset_ufw_foreign.json")
    inputs = rules.refs[("ip", "filter", "INPUT")]
    assert [r.owner for r in inputs] == [Owner.FOREIGN] + [Owner.UFW] * 6 + [Owner.FOREIGN]
    assert inputs[0].handle == 124 and inputs[-1].handle == 125


def test_owned_tables_are_what_the_role_alone_decides() -> None:
    rules = ruleset("nft_ruleset_os_firewall_foreign.json")
    role = nft.OwnedTables(rules, Owner.OS_FIREWALL)
    assert role.base_chains(V4) == [("inet", "os_firewall", "input")]
    assert reach(role, V4) is Reach.ANY
    assert reach(rules, V4) is Reach.NONE  # iptables -I INPUT ... DROP
    assert reach(rules, V6) is Reach.SOME  # the inet blocker table rejects 2001:db8::/32
    blocker = rules.refs[("inet", "blocker", "input")][0]
    assert rules.reach_of(blocker, Packet("ipv6", "tcp", 22)) is Reach.NONE
    assert rules.reach_of(rules.refs[("ip", "filter", "INPUT")][1], Packet("ipv4", "tcp", 22)) is Reach.SOME


def test_base_chains_in_priority_order() -> None:
    rules = ruleset("nft_ruleset_os_firewall_foreign.json")
    assert rules.base_chains(V6) == [("inet", "blocker", "input"), ("inet", "os_firewall", "input")]
    assert rules.base_chains(V4)[0] == ("inet", "blocker", "input")


@pytest.mark.parametrize("text", ["not json", "[]", '{"nftables": {}}'])
def test_unreadable_output(text: str) -> None:
    assert nft.NftRuleset.from_json(text) is None


def test_sets_of_the_same_table() -> None:
    objects = [
        {
            "chain": {
                "family": "inet",
                "table": "t",
                "name": "in",
                "type": "filter",
                "hook": "input",
                "prio": 0,
                "policy": "drop",
            }
        },
        {"set": {"family": "inet", "table": "t", "name": "web", "elem": [80, {"range": [7000, 8000]}]}},
        {
            "rule": {
                "family": "inet",
                "table": "t",
                "chain": "in",
                "handle": 3,
                "expr": [{"match": _dport("@web")}, {"accept": None}],
            }
        },
    ]
    rules = nft.NftRuleset(json.loads(json.dumps(objects)))
    assert reach(rules, V4) is Reach.ANY
    assert reach(rules, Packet("ipv4", "tcp", 443)) is Reach.NONE
