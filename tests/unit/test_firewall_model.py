"""Unit tests for plugins/module_utils/firewall_model.py: the shared classification and the chain walker,
plus the structure rules every firewall_*.py reader follows (short functions, texts as data)."""

from __future__ import annotations

import ast
import string
from pathlib import Path
from typing import Any, Optional

import pytest

from ansible_collections.cosyvoice.deploy.plugins.module_utils import firewall_model as m
from ansible_collections.cosyvoice.deploy.plugins.module_utils.firewall_model import (
    Action,
    End,
    Owner,
    Packet,
    Reach,
    RuleRef,
    Step,
)

MODULE_UTILS = Path(__file__).resolve().parents[2] / "plugins" / "module_utils"
ENGINES = sorted(MODULE_UTILS.glob("firewall_*.py"))
PACKET = Packet("ipv4", "tcp", 7860)


def ref(text: str, owner: Owner = Owner.FOREIGN, chain: str = "input", position: int = 1) -> RuleRef:
    return RuleRef("nft", "inet", "t", chain, text, owner, handle=position, position=position)


class FakeLayer(m.Layer):
    """Chains of ready-made steps: {chain: [Step, ...]}, base chains with policies."""

    def __init__(self, chains: dict[str, list[Step]], bases: dict[str, Action]) -> None:
        self.chains = chains
        self.bases = bases

    def base_chains(self, packet: Packet) -> list[Any]:
        return list(self.bases)

    def policy(self, key: Any) -> Action:
        return self.bases[key]

    def steps(self, key: Any, packet: Packet) -> Optional[list[Step]]:
        return self.chains.get(key)

    def jump_key(self, key: Any, target: Optional[str]) -> Any:
        return target

    def reach_of(self, rule: RuleRef, packet: Packet) -> Reach:
        return Reach.NONE


def step(
    reach: Reach, action: Action, text: str = "r", owner: Owner = Owner.FOREIGN, target: str | None = None
) -> Step:
    return Step(reach, action, ref(text, owner), target)


# ---------------------------------------------------------------- combining reaches
@pytest.mark.parametrize(
    ("reaches", "expected"),
    [
        ((Reach.ANY, Reach.ANY), Reach.ANY),
        ((Reach.ANY, Reach.SOME), Reach.SOME),
        ((Reach.SOME, Reach.UNKNOWN), Reach.UNKNOWN),
        ((Reach.UNKNOWN, Reach.NONE), Reach.NONE),
    ],
)
def test_matches_of_one_rule_narrow_each_other(reaches: tuple[Reach, ...], expected: Reach) -> None:
    assert m.both(*reaches) is expected


def test_every_chain_must_pass_and_either_family_opens_a_port() -> None:
    assert m.all_pass([Reach.ANY, Reach.SOME]) is Reach.SOME
    assert m.all_pass([Reach.ANY, Reach.NONE, Reach.UNKNOWN]) is Reach.NONE
    assert m.all_pass([]) is Reach.ANY
    assert m.either_family([Reach.NONE, Reach.ANY]) is Reach.ANY
    assert m.either_family([Reach.NONE, Reach.UNKNOWN]) is Reach.UNKNOWN
    assert m.either_family([Reach.NONE, Reach.NONE]) is Reach.NONE


def test_hit_turns_a_yes_no_match_into_a_reach() -> None:
    assert m.hit(True) is Reach.ANY and m.hit(False) is Reach.NONE
    assert m.hit(True, negated=True) is Reach.NONE and m.hit(False, negated=True) is Reach.ANY
    assert m.hit(None) is Reach.UNKNOWN


@pytest.mark.parametrize(
    ("spec", "inside", "outside"),
    [
        ("any", 1, None),
        ("22", 22, 23),
        ("8000:8010", 8005, 8011),
        ("6000-6010", 6000, 5999),
        ("80,443,8000:8010", 443, 444),
    ],
)
def test_port_specs(spec: str, inside: int, outside: int | None) -> None:
    assert m.port_in_spec(inside, spec)
    if outside is not None:
        assert not m.port_in_spec(outside, spec)


def test_any_network_and_owners() -> None:
    assert all(m.is_any_network(v) for v in ("any", "0.0.0.0/0", "::/0"))
    assert not any(m.is_any_network(v) for v in ("10.0.0.0/8", "bogus", "0.0.0.0/1"))
    assert m.owner_of("os_firewall", "input") is Owner.OS_FIREWALL
    assert m.owner_of("firewalld", "filter_INPUT") is Owner.FIREWALLD
    assert m.owner_of("filter", "ufw-user-input") is Owner.UFW
    assert m.owner_of("filter", "INPUT", "ufw6-before-input") is Owner.UFW
    assert m.owner_of("filter", "INPUT", "INPUT_ZONES") is Owner.FIREWALLD
    assert m.owner_of("filter", "INPUT", "f2b-sshd") is Owner.FOREIGN


def test_unique_ports_normalise_and_reject_bad_ports() -> None:
    assert m.unique_ports([{"port": "22"}, {"port": 22, "proto": "tcp"}, {"port": 53, "proto": "udp"}]) == [
        {"port": 22, "proto": "tcp", "purpose": "port"},
        {"port": 53, "proto": "udp", "purpose": "port"},
    ]
    with pytest.raises(ValueError):
        m.unique_ports([{"port": 0}])


# ---------------------------------------------------------------- qualifying an end
@pytest.mark.parametrize(
    ("base", "notes", "expected"),
    [
        (Reach.ANY, [], Reach.ANY),
        (Reach.ANY, [(Reach.SOME, Action.DROP)], Reach.SOME),
        (Reach.ANY, [(Reach.UNKNOWN, Action.REJECT)], Reach.UNKNOWN),
        (Reach.NONE, [(Reach.SOME, Action.ACCEPT)], Reach.SOME),
        (Reach.NONE, [(Reach.UNKNOWN, Action.ACCEPT), (Reach.SOME, Action.ACCEPT)], Reach.UNKNOWN),
        (Reach.NONE, [(Reach.SOME, Action.DROP)], Reach.NONE),
        (Reach.SOME, [(Reach.UNKNOWN, Action.DROP)], Reach.UNKNOWN),
        (Reach.SOME, [(Reach.UNKNOWN, Action.ACCEPT)], Reach.SOME),
    ],
)
def test_walk_outcome_table(base: Reach, notes: list[tuple[Reach, Action]], expected: Reach) -> None:
    walk = m.Walk()
    for reach, action in notes:
        walk.note(reach, action)
    assert walk.outcome(base) is expected


# ---------------------------------------------------------------- walking chains
def evaluate(chains: dict[str, list[Step]], policy: Action = Action.DROP, **kwargs: Any) -> m.LayerResult:
    result = m.evaluate(FakeLayer(chains, {"input": policy}), PACKET, **kwargs)
    assert result is not None
    return result


def test_first_full_match_decides_and_partial_ones_qualify() -> None:
    chains = {"input": [step(Reach.SOME, Action.DROP), step(Reach.ANY, Action.ACCEPT), step(Reach.ANY, Action.DROP)]}
    assert evaluate(chains).reach is Reach.SOME


def test_policy_applies_when_nothing_decides() -> None:
    chains = {"input": [step(Reach.NONE, Action.ACCEPT), step(Reach.ANY, Action.CONTINUE)]}
    assert evaluate(chains, Action.DROP).reach is Reach.NONE
    assert evaluate(chains, Action.ACCEPT).reach is Reach.ANY


def test_jump_return_and_goto() -> None:
    chains = {
        "input": [step(Reach.ANY, Action.JUMP, target="sub"), step(Reach.ANY, Action.ACCEPT)],
        "sub": [step(Reach.ANY, Action.RETURN), step(Reach.ANY, Action.DROP)],
    }
    assert evaluate(chains).reach is Reach.ANY  # returned, then accepted
    chains["input"][0] = step(Reach.ANY, Action.GOTO, target="empty")
    chains["empty"] = []
    assert evaluate(chains, Action.DROP).reach is Reach.NONE  # goto falls through to the base policy


def test_a_missing_chain_or_unmodelled_verdict_is_unknown() -> None:
    chains = {"input": [step(Reach.ANY, Action.JUMP, "jump nowhere", target="nowhere"), step(Reach.ANY, Action.ACCEPT)]}
    result = evaluate(chains)
    assert result.reach is Reach.UNKNOWN and [r.text for r in result.walk.unknown] == ["jump nowhere"]
    chains = {"input": [step(Reach.ANY, Action.UNKNOWN, "queue"), step(Reach.ANY, Action.ACCEPT)]}
    assert evaluate(chains).reach is Reach.UNKNOWN


def test_endless_jumps_stop_at_max_depth() -> None:
    chains = {"input": [step(Reach.ANY, Action.JUMP, target="input")]}
    assert evaluate(chains).reach is Reach.UNKNOWN


def test_foreign_blocking_rules_are_kept_and_managed_ones_are_not() -> None:
    chains = {
        "input": [
            step(Reach.SOME, Action.REJECT, "foreign some"),
            step(Reach.SOME, Action.DROP, "managed", Owner.OS_FIREWALL),
            step(Reach.ANY, Action.DROP, "foreign all"),
        ]
    }
    result = evaluate(chains, Action.ACCEPT)
    assert [b.step.rule.text for b in result.walk.blocks] == ["foreign some", "foreign all"]
    assert result.reach is Reach.NONE


def test_an_opaque_owner_hands_over_to_the_backend() -> None:
    chains = {"input": [step(Reach.SOME, Action.DROP, "foreign"), step(Reach.ANY, Action.JUMP, "ufw", Owner.UFW, "x")]}
    result = evaluate(chains, Action.DROP, opaque=frozenset({Owner.UFW}), backend=Reach.ANY)
    assert result.walk.backend_reached and result.reach is Reach.SOME  # ufw allows, the foreign rule drops some
    assert m.walk_chain(m.Context(FakeLayer(chains, {}), PACKET, frozenset({Owner.UFW})), "input")[0] is End.BACKEND


def test_a_layer_without_base_chains_has_no_say() -> None:
    assert m.evaluate(FakeLayer({}, {}), PACKET) is None


def test_rule_list_is_one_first_match_chain() -> None:
    rules = m.RuleList(
        lambda packet: [step(Reach.ANY if packet.port == 22 else Reach.NONE, Action.ACCEPT)], Action.DROP
    )
    assert m.evaluate(rules, Packet("ipv4", "tcp", 22)).reach is Reach.ANY
    assert m.evaluate(rules, PACKET).reach is Reach.NONE
    assert rules.reach_of(ref("r"), Packet("ipv4", "tcp", 22)) is Reach.ANY


def test_port_result_and_veto() -> None:
    families = {"ipv4": Reach.NONE, "ipv6": Reach.ANY}
    assert m.port_result(80, "tcp", families, "why")["scope"] == "any"
    vetoed = m.port_result(80, "tcp", families, "why", vetoed=True)
    assert vetoed["scope"] == "none" and vetoed["allowed"] is False
    assert vetoed["families"] == {"ipv4": "none", "ipv6": "any"}


def test_rule_ref_names_where_a_rule_is() -> None:
    assert ref("r", position=4).where() == "nft inet t input handle 4"
    legacy = RuleRef("iptables-legacy", "ip", "filter", "INPUT", "-A INPUT -j DROP", position=2)
    assert legacy.where() == "iptables-legacy ip filter INPUT rule 2"


# ---------------------------------------------------------------- structure of the readers
def _functions(path: Path) -> list[ast.FunctionDef]:
    return [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


@pytest.mark.parametrize("path", ENGINES, ids=lambda p: p.name)
def test_every_function_of_the_rule_engines_is_short(path: Path) -> None:
    long = [
        f"{f.name} ({f.end_lineno - f.lineno + 1} lines)" for f in _functions(path) if f.end_lineno - f.lineno >= 40
    ]
    assert not long, f"{path.name}: {long}"


def test_reason_texts_are_data_with_known_placeholders() -> None:
    names = {field for text in m.REASONS.values() for _, field, _, _ in string.Formatter().parse(text) if field}
    assert names <= {"default", "zone", "target", "policy", "base", "verdict", "manager", "where", "rule", "port"}
    assert m.reason("ufw", default="deny") == "ufw (default incoming: deny)"
