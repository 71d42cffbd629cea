"""Unit tests for plugins/module_utils/firewall_iptables.py: `iptables-save` output (legacy and nft variant)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.cosyvoice.deploy.plugins.module_utils import firewall_iptables as ipt
from ansible_collections.cosyvoice.deploy.plugins.module_utils.firewall_model import (
    Action,
    Owner,
    Packet,
    Reach,
    evaluate,
)

DATA = Path(__file__).resolve().parent / "data" / "os_firewall"
V4 = Packet("ipv4", "tcp", 7860)


def sample(name: str) -> str:
    return (DATA / name).read_text()


def rule(spec: str, chain: str = "INPUT") -> ipt.IptRule:
    return ipt.IptRule(chain, f"-A {chain} {spec}", 1)


def chains(*names: str):  # noqa: ANN201
    return lambda name: name in names


def test_parse_real_legacy_save() -> None:
    tables = ipt.parse_save(sample("iptables_legacy_save.txt"))
    assert list(tables) == ["filter"]
    table = tables["filter"]
    assert table.policies == {"INPUT": "ACCEPT", "FORWARD": "ACCEPT", "OUTPUT": "ACCEPT"}
    assert [r.line for r in table.rules["INPUT"]] == [
        "-A INPUT -p tcp -m tcp --dport 7860 -j REJECT --reject-with icmp-port-unreachable",
        '-A INPUT -p tcp -m multiport --dports 80,443 -m comment --comment "block web for now" -j DROP',
        "-A INPUT -p tcp -j DROP",
    ]
    assert [r.position for r in table.rules["INPUT"]] == [1, 2, 3]
    assert ipt.has_rules(tables)


def test_empty_legacy_tables_have_no_rules() -> None:
    """What iptables-legacy-save prints once the legacy filter table exists but holds nothing."""
    empty = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"
    assert not ipt.has_rules(ipt.parse_save(empty))
    assert not ipt.has_rules(ipt.parse_save(""))
    assert ipt.has_rules(ipt.parse_save(sample("ip6tables_legacy_save.txt")))  # policy DROP


def test_options_keep_negation_and_arguments() -> None:
    found = ipt.options(
        ["!", "-s", "10.0.0.0/8", "-p", "tcp", "-m", "tcp", "!", "--dport", "22", "--syn", "-j", "DROP"]
    )
    assert found == [
        ipt.Option("-s", ("10.0.0.0/8",), True),
        ipt.Option("-p", ("tcp",)),
        ipt.Option("-m", ("tcp",)),
        ipt.Option("--dport", ("22",), True),
        ipt.Option("--syn", ()),
        ipt.Option("-j", ("DROP",)),
    ]


@pytest.mark.parametrize(
    ("spec", "reach", "action"),
    [
        ("-p tcp -m tcp --dport 7860 -j DROP", Reach.ANY, Action.DROP),
        ("-p tcp -m tcp --dport 22 -j DROP", Reach.NONE, Action.DROP),
        ("-p udp -m udp --dport 7860 -j DROP", Reach.NONE, Action.DROP),
        ("-p 6 --dport 7860 -j ACCEPT", Reach.ANY, Action.ACCEPT),
        ("-p tcp -m tcp ! --dport 22 -j REJECT --reject-with tcp-reset", Reach.ANY, Action.REJECT),
        ("-p tcp -m tcp --dport 7000:8000 -j DROP", Reach.ANY, Action.DROP),
        ("-p tcp -m multiport --dports 80,7860 -j DROP", Reach.ANY, Action.DROP),
        ("-p tcp -m multiport --ports 7860 -j DROP", Reach.ANY, Action.DROP),
        ("-p tcp -m multiport --ports 80 -j DROP", Reach.SOME, Action.DROP),
        ("-p tcp -m multiport --sports 80 -j DROP", Reach.SOME, Action.DROP),
        ("-s 10.0.0.0/8 -p tcp -m tcp --dport 7860 -j DROP", Reach.SOME, Action.DROP),
        ("-s 0.0.0.0/0 -j DROP", Reach.ANY, Action.DROP),
        ("! -s 0.0.0.0/0 -j DROP", Reach.NONE, Action.DROP),
        ("-d 192.0.2.1/32 -j DROP", Reach.SOME, Action.DROP),
        ("-i lo -j ACCEPT", Reach.NONE, Action.ACCEPT),
        ("! -i lo -j DROP", Reach.ANY, Action.DROP),
        ("-i eth0 -j DROP", Reach.SOME, Action.DROP),
        ("-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT", Reach.NONE, Action.ACCEPT),
        ("-m state --state NEW -j DROP", Reach.ANY, Action.DROP),
        ("-p tcp -m tcp --syn -j DROP", Reach.ANY, Action.DROP),
        ("-f -j DROP", Reach.NONE, Action.DROP),
        ('-m comment --comment "hello there" -j DROP', Reach.ANY, Action.DROP),
        ("-m limit --limit 3/min -j ACCEPT", Reach.SOME, Action.ACCEPT),
        (
            "-p tcp -m tcp --dport 7860 -m recent --update --seconds 60 --hitcount 4 --name DEFAULT --rsource -j DROP",
            Reach.SOME,
            Action.DROP,
        ),
        ("-m addrtype --dst-type LOCAL -j DROP", Reach.UNKNOWN, Action.DROP),
        ("--frobnicate 3 -j DROP", Reach.UNKNOWN, Action.DROP),
        ("-j LOG --log-prefix x", Reach.ANY, Action.CONTINUE),
        ("-p tcp", Reach.ANY, Action.CONTINUE),
        ("-j NFQUEUE --queue-num 1", Reach.ANY, Action.UNKNOWN),
        ("-j TPROXY", Reach.ANY, Action.UNKNOWN),
        ("-j RETURN", Reach.ANY, Action.RETURN),
    ],
)
def test_classify(spec: str, reach: Reach, action: Action) -> None:
    found = ipt.classify(rule(spec), V4, chains())
    assert (found.reach, found.action) == (reach, action)


def test_jumps_to_user_chains() -> None:
    assert ipt.classify(rule("-j f2b-sshd"), V4, chains("f2b-sshd")) == ipt.Classified(
        Reach.ANY, Action.JUMP, "f2b-sshd"
    )
    assert ipt.classify(rule("-g web"), V4, chains("web")) == ipt.Classified(Reach.ANY, Action.GOTO, "web")


def test_rule_refs_remove_exactly_that_rule() -> None:
    line = rule('-p tcp -m multiport --dports 80,443 -m comment --comment "block web for now" -j DROP')
    ref = ipt.rule_ref(line, "filter", "ipv4")
    assert ref.remove_command == (
        'iptables-legacy -D INPUT -p tcp -m multiport --dports 80,443 -m comment --comment "block web for now" -j DROP'
    )
    assert ref.owner is Owner.FOREIGN and ref.table_family == "ip" and ref.handle is None
    raw = ipt.rule_ref(rule("-p tcp --dport 7860 -j DROP", "PREROUTING"), "raw", "ipv6")
    assert raw.remove_command == "ip6tables-legacy -t raw -D PREROUTING -p tcp --dport 7860 -j DROP"
    assert ipt.rule_ref(rule("-j ufw-before-input"), "filter", "ipv4").owner is Owner.UFW


def test_legacy_layer_of_a_real_host() -> None:
    v4 = ipt.IptablesLayer("ipv4", ipt.parse_save(sample("iptables_legacy_save.txt")))
    v6 = ipt.IptablesLayer("ipv6", ipt.parse_save(sample("ip6tables_legacy_save.txt")))
    assert v4.base_chains(Packet("ipv6", "tcp", 1)) == []
    results = {port: evaluate(v4, Packet("ipv4", "tcp", port)) for port in (7860, 443, 22)}
    assert {port: r.reach for port, r in results.items() if r} == {7860: Reach.NONE, 443: Reach.NONE, 22: Reach.NONE}
    assert results[443].walk.blocks[0].step.rule.position == 2
    assert evaluate(v4, Packet("ipv4", "udp", 53)).reach is Reach.ANY  # only tcp is dropped
    assert evaluate(v6, Packet("ipv6", "udp", 53)).reach is Reach.NONE  # policy DROP
    block = evaluate(v6, Packet("ipv6", "tcp", 8080)).walk.blocks[0]
    assert block.step.reach is Reach.SOME and block.step.rule.text.startswith("-A INPUT -s 2001:db8::/32")
    assert v4.reach_of(results[443].walk.blocks[0].step.rule, Packet("ipv4", "tcp", 22)) is Reach.NONE


def test_user_chains_are_followed() -> None:
    text = (
        "*filter\n:INPUT ACCEPT [0:0]\n:f2b-sshd - [0:0]\n"
        "-A INPUT -p tcp -m multiport --dports 22,7860 -j f2b-sshd\n"
        "-A f2b-sshd -s 203.0.113.7/32 -j REJECT --reject-with icmp-port-unreachable\n"
        "-A f2b-sshd -j RETURN\nCOMMIT\n"
    )
    layer = ipt.IptablesLayer("ipv4", ipt.parse_save(text))
    result = evaluate(layer, V4)
    assert result.reach is Reach.SOME
    assert result.walk.blocks[0].step.rule.chain == "f2b-sshd"
