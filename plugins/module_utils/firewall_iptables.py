# -*- coding: utf-8 -*-
# Copyright: cosyvoice-deploy maintainers
# Apache License 2.0
"""iptables, read from `iptables-save` output (legacy, or the nft variant for xt rules).

Legacy iptables filters packets next to nftables (both hook into the same
netfilter input hook, a packet must pass both). Its rules are plain text, so
their matches can be classified from the options: `-p`, `-s`, `-d`, `-i`,
`--dport(s)`, `--ctstate`, ... Anything not modelled (an unknown match module
or option) makes the rule's match UNKNOWN rather than a guess.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from ansible_collections.cosyvoice.deploy.plugins.module_utils import netshape
from ansible_collections.cosyvoice.deploy.plugins.module_utils.firewall_model import (
    NF_FAMILY,
    PROTO_NUMBERS,
    Action,
    Layer,
    Packet,
    Reach,
    RuleRef,
    Step,
    both,
    hit,
    owner_of,
    port_in_spec,
)

LEGACY_TOOLS = {"ipv4": "iptables-legacy", "ipv6": "ip6tables-legacy"}
# The command that edits the rules of each source (removal commands name it).
SOURCE_TOOLS = {
    "iptables-legacy": LEGACY_TOOLS,
    "iptables-nft": {"ipv4": "iptables-nft", "ipv6": "ip6tables-nft"},
}
BUILTIN_POLICIES = {"ACCEPT": Action.ACCEPT, "DROP": Action.DROP}
TARGET_OPTIONS = ("-j", "--jump", "-g", "--goto")

# -j targets. A name not listed here is a jump when such a chain exists, else UNKNOWN.
TARGETS = {
    "ACCEPT": Action.ACCEPT,
    "DROP": Action.DROP,
    "REJECT": Action.REJECT,
    "RETURN": Action.RETURN,
    "LOG": Action.CONTINUE,
    "NFLOG": Action.CONTINUE,
    "ULOG": Action.CONTINUE,
    "MARK": Action.CONTINUE,
    "CONNMARK": Action.CONTINUE,
    "TRACE": Action.CONTINUE,
    "AUDIT": Action.CONTINUE,
    "CT": Action.CONTINUE,
    "NOTRACK": Action.CONTINUE,
    "QUEUE": Action.UNKNOWN,
    "NFQUEUE": Action.UNKNOWN,
}

# -m modules: the reach of loading them. Those with None are classified by their options
# (below); the others match depending on the source or on history (rate, recent, ipset).
MODULES: Dict[str, Optional[Reach]] = {
    "tcp": None,
    "udp": None,
    "multiport": None,
    "conntrack": None,
    "state": None,
    "comment": None,
    "limit": Reach.SOME,
    "hashlimit": Reach.SOME,
    "recent": Reach.SOME,
    "connlimit": Reach.SOME,
    "set": Reach.SOME,
    "iprange": Reach.SOME,
    "mac": Reach.SOME,
}


@dataclass(frozen=True)
class Option:
    name: str
    args: Tuple[str, ...]
    negated: bool = False


@dataclass(frozen=True)
class IptRule:
    chain: str
    line: str  # as iptables-save printed it: -A INPUT -p tcp -m tcp --dport 7860 -j DROP
    position: int

    @property
    def spec(self) -> str:
        """The rule without `-A CHAIN`: what `-D CHAIN` needs to delete exactly this rule."""
        return self.line.split(None, 2)[2] if len(self.line.split(None, 2)) == 3 else ""

    @property
    def args(self) -> List[str]:
        try:
            return shlex.split(self.spec)
        except ValueError:
            return ["--unparsable"]


@dataclass
class IptTable:
    name: str
    policies: Dict[str, str] = field(default_factory=dict)  # chain -> ACCEPT | DROP | - (user chain)
    rules: Dict[str, List[IptRule]] = field(default_factory=dict)


def parse_save(text: Optional[str]) -> Dict[str, IptTable]:
    """`iptables-save` output: {table name: IptTable}."""
    tables: Dict[str, IptTable] = {}
    table: Optional[IptTable] = None
    for raw in (text or "").splitlines():
        line = raw.strip()
        if line.startswith("*"):
            table = tables.setdefault(line[1:], IptTable(line[1:]))
        elif table is None or not line or line.startswith("#"):
            continue
        elif line.startswith(":"):
            chain, _, rest = line[1:].partition(" ")
            table.policies[chain] = rest.split()[0] if rest.split() else "-"
            table.rules.setdefault(chain, [])
        elif line.startswith("-A "):
            chain = line.split()[1]
            rules = table.rules.setdefault(chain, [])
            rules.append(IptRule(chain, line, len(rules) + 1))
    return tables


def has_rules(tables: Dict[str, IptTable]) -> bool:
    """Any rule, or a built-in chain whose policy is not ACCEPT."""
    return any(
        any(table.rules.values()) or any(policy not in ("ACCEPT", "-") for policy in table.policies.values())
        for table in tables.values()
    )


# --------------------------------------------------------------------------
# Matches
# --------------------------------------------------------------------------
def options(args: List[str]) -> List[Option]:
    """`! -s 10.0.0.0/8 -p tcp -m tcp --dport 22` -> [Option('-s', ('10.0.0.0/8',), True), ...]."""
    result: List[Option] = []
    negated = False
    index = 0
    while index < len(args):
        token = args[index]
        index += 1
        if token == "!":
            negated = True
            continue
        if not token.startswith("-"):
            continue
        end = index
        while end < len(args) and args[end] != "!" and not args[end].startswith("-"):
            end += 1
        result.append(Option(token, tuple(args[index:end]), negated))
        negated = False
        index = end
    return result


def _first(opt: Option) -> str:
    return opt.args[0] if opt.args else ""


def _proto(opt: Option, packet: Packet) -> Reach:
    value = _first(opt).lower()
    if value in ("all", "0"):
        return hit(True, opt.negated)
    return hit(value in (packet.proto, str(PROTO_NUMBERS[packet.proto])), opt.negated)


def _address(opt: Option, packet: Packet) -> Reach:
    """-s/-d: every address (a /0) or some."""
    net = netshape.network(_first(opt)) or netshape.network(netshape.suggested_network(_first(opt)))
    if net is not None and net.prefixlen == 0:
        return hit(True, opt.negated)
    return Reach.SOME


def _in_interface(opt: Option, packet: Packet) -> Reach:
    if _first(opt) == "lo":
        return hit(False, opt.negated)
    return Reach.SOME


def _dport(opt: Option, packet: Packet) -> Reach:
    return hit(port_in_spec(packet.port, _first(opt)), opt.negated)


def _either_port(opt: Option, packet: Packet) -> Reach:
    """multiport --ports: the destination or the source port."""
    if port_in_spec(packet.port, _first(opt)):
        return hit(True, opt.negated)
    return Reach.SOME


def _ctstate(opt: Option, packet: Packet) -> Reach:
    return hit("NEW" in _first(opt).upper().split(","), opt.negated)


def _is_new(opt: Option, packet: Packet) -> Reach:
    """--syn: the first packet of a new TCP connection."""
    return hit(True, opt.negated)


def _fragment(opt: Option, packet: Packet) -> Reach:
    """-f: second and further fragments, which a connection's first packet is not."""
    return hit(False, opt.negated)


def _every(opt: Option, packet: Packet) -> Reach:
    return Reach.ANY


def _some(opt: Option, packet: Packet) -> Reach:
    return Reach.SOME


OPTION_MATCHES: Dict[str, Callable[[Option, Packet], Reach]] = {
    "-p": _proto,
    "--protocol": _proto,
    "-s": _address,
    "--source": _address,
    "-d": _address,
    "--destination": _address,
    "-i": _in_interface,
    "--in-interface": _in_interface,
    "-o": _every,
    "--out-interface": _every,
    "--dport": _dport,
    "--destination-port": _dport,
    "--dports": _dport,
    "--destination-ports": _dport,
    "--ports": _either_port,
    "--sport": _some,
    "--source-port": _some,
    "--sports": _some,
    "--source-ports": _some,
    "--ctstate": _ctstate,
    "--state": _ctstate,
    "--comment": _every,
    "--syn": _is_new,
    "-f": _fragment,
    "--fragment": _fragment,
}


@dataclass(frozen=True)
class Classified:
    reach: Reach
    action: Action
    target: Optional[str] = None


def _target(opt: Option, is_chain: Callable[[str], bool]) -> Classified:
    name = _first(opt)
    action = TARGETS.get(name)
    if action is None:
        action = Action.UNKNOWN if not is_chain(name) else Action.JUMP
    if action is Action.JUMP and opt.name in ("-g", "--goto"):
        action = Action.GOTO
    return Classified(Reach.ANY, action, name if action in (Action.JUMP, Action.GOTO) else None)


def classify(rule: IptRule, packet: Packet, is_chain: Callable[[str], bool]) -> Classified:
    """The reach of the rule's matches for `packet`, and what it does."""
    reach, verdict = Reach.ANY, Classified(Reach.ANY, Action.CONTINUE)
    opaque_options = False  # options of a module or target that are not classified one by one
    for opt in options(rule.args):
        if opt.name in ("-m", "--match"):
            module = MODULES.get(_first(opt), Reach.UNKNOWN)
            opaque_options = module is not None
            reach = both(reach, module or Reach.ANY)
        elif opt.name in TARGET_OPTIONS:
            verdict, opaque_options = _target(opt, is_chain), True
        elif opt.name in OPTION_MATCHES:
            reach = both(reach, OPTION_MATCHES[opt.name](opt, packet))
        elif not opaque_options:
            reach = both(reach, Reach.UNKNOWN)
    return Classified(reach, verdict.action, verdict.target)


# --------------------------------------------------------------------------
# One address family of legacy iptables as a layer
# --------------------------------------------------------------------------
def rule_ref(rule: IptRule, table: str, family: str, source: str = "iptables-legacy") -> RuleRef:
    tool = SOURCE_TOOLS[source][family]
    where = "" if table == "filter" else f" -t {table}"
    target = next((_first(opt) for opt in options(rule.args) if opt.name in TARGET_OPTIONS), None)
    return RuleRef(
        source=source,
        table_family=NF_FAMILY[family],
        table=table,
        chain=rule.chain,
        text=rule.line,
        owner=owner_of(table, rule.chain, target),
        position=rule.position,
        remove_command=f"{tool}{where} -D {shlex.quote(rule.chain)} {rule.spec}",
    )


class IptablesLayer(Layer):
    """The filter table's INPUT chain of one address family (and the chains it jumps to)."""

    def __init__(self, family: str, tables: Dict[str, IptTable], source: str = "iptables-legacy") -> None:
        self.family = family
        self.tables = tables
        self.source = source
        self.refs = {
            (name, chain): [rule_ref(rule, name, family, source) for rule in rules]
            for name, table in tables.items()
            for chain, rules in table.rules.items()
        }

    def base_chains(self, packet: Packet) -> List[Tuple[str, str]]:
        filter_table = self.tables.get("filter")
        if packet.family != self.family or filter_table is None or "INPUT" not in filter_table.policies:
            return []
        return [("filter", "INPUT")]

    def policy(self, key: Tuple[str, str]) -> Action:
        return BUILTIN_POLICIES.get(self.tables[key[0]].policies.get(key[1], "ACCEPT"), Action.ACCEPT)

    def _rules(self, key: Tuple[str, str]) -> Optional[List[IptRule]]:
        table = self.tables.get(key[0])
        return None if table is None or key[1] not in table.rules else table.rules[key[1]]

    def steps(self, key: Tuple[str, str], packet: Packet) -> Optional[List[Step]]:
        rules = self._rules(key)
        if rules is None:
            return None
        is_chain = self._is_chain(key[0])
        return [self._step(rule, ref, packet, is_chain) for rule, ref in zip(rules, self.refs[key])]

    def _is_chain(self, table: str) -> Callable[[str], bool]:
        return lambda name: name in self.tables[table].rules

    @staticmethod
    def _step(rule: IptRule, ref: RuleRef, packet: Packet, is_chain: Callable[[str], bool]) -> Step:
        found = classify(rule, packet, is_chain)
        return Step(found.reach, found.action, ref, found.target)

    def jump_key(self, key: Tuple[str, str], target: Optional[str]) -> Tuple[str, str]:
        return (key[0], target or "")

    def reach_of(self, rule: RuleRef, packet: Packet) -> Reach:
        rules = self._rules((rule.table, rule.chain)) or []
        found = [r for r in rules if r.position == rule.position]
        return classify(found[0], packet, self._is_chain(rule.table)).reach if found else Reach.NONE
