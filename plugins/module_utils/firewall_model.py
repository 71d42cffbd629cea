# -*- coding: utf-8 -*-
# Copyright: cosyvoice-deploy maintainers
# Apache License 2.0
"""The vocabulary every firewall reader of this collection shares.

The question all of them answer: would a NEW connection to one port (tcp or
udp), from a source on the outside that we know nothing about, reach the host?

* ``Reach`` classifies how much of that traffic something covers: ``ANY``
  (every such packet), ``SOME`` (only some sources, interfaces or destination
  addresses), ``NONE``, ``UNKNOWN`` (the ruleset uses something not modelled).
* A ruleset is a ``Layer``: base chains on the input hook, each an ordered list
  of rules; one rule, seen by one ``Packet``, is a ``Step`` (its reach, its
  ``Action``, the ``RuleRef`` that names it). ufw's user rules and a firewalld
  zone are layers too (one first-match chain with a default).
* ``walk_chain`` follows a packet through a chain (jumps, gotos, returns) and
  keeps what it met in a ``Walk``; ``evaluate`` does that for every base chain
  of a layer (a packet must pass all of them).

Rules are attributed to an ``Owner``: the firewall managers this role knows
(the role's own nftables table, ufw, firewalld) or ``FOREIGN`` (anything
another tool inserted). Foreign rules that drop or reject the packet are kept
in ``Walk.blocks``; rules of an ``opaque`` owner stop the walk with
``End.BACKEND``: from there on, that manager's own evaluation decides.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, Dict, FrozenSet, List, Optional, Tuple

from ansible_collections.cosyvoice.deploy.plugins.module_utils import netshape

LABEL = "os_firewall"
FAMILIES = ("ipv4", "ipv6")
NF_FAMILY = {"ipv4": "ip", "ipv6": "ip6"}
PROTO_NUMBERS = {"tcp": 6, "udp": 17}
MAX_DEPTH = 16


class Reach(Enum):
    """How much of the traffic in question a match (or a whole evaluation) covers."""

    ANY = "any"
    SOME = "some"
    NONE = "none"
    UNKNOWN = "unknown"


class Action(Enum):
    """What a rule does with the packets it matches."""

    ACCEPT = "accept"
    DROP = "drop"
    REJECT = "reject"
    JUMP = "jump"
    GOTO = "goto"
    RETURN = "return"
    CONTINUE = "continue"  # no verdict (counter, log, mark): the next rule decides
    UNKNOWN = "unknown"  # a verdict not modelled (queue, vmap, an unknown target)


class End(Enum):
    """How a walk through one chain ended."""

    ACCEPT = "accept"
    DROP = "drop"
    FALLTHROUGH = "fallthrough"  # no rule decided: the caller, or the base chain's policy, does
    UNKNOWN = "unknown"  # the chain could not be followed (missing, too deep)
    BACKEND = "backend"  # a rule of the firewall manager in charge: its own evaluation decides


class Owner(Enum):
    """Who wrote a rule."""

    FOREIGN = "foreign"
    OS_FIREWALL = "os_firewall"
    UFW = "ufw"
    FIREWALLD = "firewalld"


BLOCKING = frozenset({Action.DROP, Action.REJECT})
END_OF_ACTION = {Action.ACCEPT: End.ACCEPT, Action.DROP: End.DROP, Action.REJECT: End.DROP}
ACTION_OF_END = {End.ACCEPT: Action.ACCEPT, End.DROP: Action.DROP}
REACH_OF_END = {End.ACCEPT: Reach.ANY, End.DROP: Reach.NONE, End.UNKNOWN: Reach.UNKNOWN}

# Whole tables, and chains (by name prefix), that a firewall manager owns.
TABLE_OWNERS = {"os_firewall": Owner.OS_FIREWALL, "firewalld": Owner.FIREWALLD}
CHAIN_PREFIX_OWNERS = (
    ("ufw-", Owner.UFW),
    ("ufw6-", Owner.UFW),
    # firewalld's iptables backend: the entry chains INPUT jumps to.
    ("INPUT_direct", Owner.FIREWALLD),
    ("INPUT_ZONES", Owner.FIREWALLD),
)

# Several matches in one rule: the narrowest wins (a NONE ends the rule).
_AND_PRECEDENCE = (Reach.NONE, Reach.UNKNOWN, Reach.SOME)
# Several base chains (or layers) on one hook: a packet must pass all of them.
_ALL_PRECEDENCE = (Reach.NONE, Reach.UNKNOWN, Reach.SOME)
# Two address families: a port is reachable as soon as one of them lets it in.
_EITHER_PRECEDENCE = (Reach.ANY, Reach.SOME, Reach.UNKNOWN)

# How what a walk met before its end qualifies the end: (end reach, kind of
# earlier rule, its action) -> result. First line that applies wins.
_QUALIFIERS = (
    (Reach.ANY, "maybe", Action.DROP, Reach.UNKNOWN),
    (Reach.ANY, "partial", Action.DROP, Reach.SOME),
    (Reach.NONE, "maybe", Action.ACCEPT, Reach.UNKNOWN),
    (Reach.NONE, "partial", Action.ACCEPT, Reach.SOME),
    (Reach.SOME, "maybe", Action.DROP, Reach.UNKNOWN),
)

# Every sentence the readers put into a port's `reason`.
REASONS = {
    "ufw": "ufw (default incoming: {default})",
    "ufw_inactive": "ufw is installed but inactive",
    "firewalld": "firewalld zone {zone} (target {target})",
    "nftables": "nftables input hook",
    "no_input_chain": "no nftables chain on the input hook",
    "nft_unreadable": "unreadable nft output",
    "iptables": "iptables-legacy INPUT chain (policy {policy})",
    "nothing_found": "no ufw, firewalld or nftables ruleset found",
    "needs_root": "os_firewall_facts needs root (become: true) to read the firewall",
    "foreign_block": "{base}; {verdict} by a rule that {manager} did not write: {where}: {rule}",
    "unknown_rule": "{base}; cannot evaluate {where}: {rule}",
    "kept_for_ssh": "the rule also matches SSH (port {port}/tcp)",
}

# How a port's reason names what a blocking rule did.
VERDICT_WORDS = {Action.DROP: "dropped", Action.REJECT: "rejected"}

# Managers as the foreign_block sentence names them.
MANAGER_NAMES = {"ufw": "ufw", "firewalld": "firewalld", "nftables": "os_firewall", "iptables": "os_firewall"}


def reason(key: str, **values: Any) -> str:
    return REASONS[key].format(**values)


@dataclass(frozen=True)
class Packet:
    """A new connection to `port`/`proto` over `family` (ipv4 | ipv6) from an unknown outside source."""

    family: str
    proto: str
    port: int

    @property
    def nf(self) -> str:
        return NF_FAMILY[self.family]


@dataclass(frozen=True)
class RuleRef:
    """One rule, named so that a person can find it and remove exactly it."""

    source: str  # nft | iptables-legacy | ufw | firewalld
    table_family: str  # nft's family (ip, ip6, inet); ip or ip6 for iptables
    table: str
    chain: str
    text: str
    owner: Owner = Owner.FOREIGN
    handle: Optional[int] = None
    position: Optional[int] = None  # 1-based place in its chain
    remove_command: Optional[str] = None

    def where(self) -> str:
        place = f"handle {self.handle}" if self.handle is not None else f"rule {self.position}"
        return f"{self.source} {self.table_family} {self.table} {self.chain} {place}"


@dataclass(frozen=True)
class Step:
    """One rule as one packet sees it."""

    reach: Reach
    action: Action
    rule: RuleRef
    target: Optional[str] = None  # the chain of a jump or goto


def owner_of(table: str, chain: str, target: Optional[str] = None) -> Owner:
    """The manager that wrote a rule in `table`/`chain` (jumping to `target`), else FOREIGN."""
    if table in TABLE_OWNERS:
        return TABLE_OWNERS[table]
    for name in (chain, target or ""):
        for prefix, owner in CHAIN_PREFIX_OWNERS:
            if name.startswith(prefix):
                return owner
    return Owner.FOREIGN


def both(*reaches: Reach) -> Reach:
    """Several matches of one rule, all required."""
    return _first_of(_AND_PRECEDENCE, reaches, Reach.ANY)


def all_pass(reaches: List[Reach]) -> Reach:
    """Several base chains or layers that a packet must all pass."""
    return _first_of(_ALL_PRECEDENCE, reaches, Reach.ANY)


def either_family(reaches: List[Reach]) -> Reach:
    """The scope of a port from the reach of each address family."""
    return _first_of(_EITHER_PRECEDENCE, reaches, Reach.NONE)


def _first_of(precedence: Tuple[Reach, ...], reaches: Any, default: Reach) -> Reach:
    for reach in precedence:
        if reach in reaches:
            return reach
    return default


def hit(found: Optional[bool], negated: bool = False) -> Reach:
    """A match that is either true or false for every such packet (None: cannot tell)."""
    if found is None:
        return Reach.UNKNOWN
    return Reach.ANY if found != negated else Reach.NONE


@dataclass
class Block:
    """A foreign rule that drops or rejects some or all of the packets, and the layer it lives in."""

    layer: "Layer"
    step: Step
    packet: Packet


@dataclass
class Walk:
    """What a packet met on its way through one or more chains."""

    partial: set = field(default_factory=set)  # verdicts (ACCEPT/DROP) applied to only some of the packets
    maybe: set = field(default_factory=set)  # verdicts that may apply (a match not modelled)
    blocks: List[Block] = field(default_factory=list)
    unknown: List[RuleRef] = field(default_factory=list)
    backend_reached: bool = False

    def note(self, reach: Reach, action: Action) -> None:
        kind = Action.ACCEPT if action is Action.ACCEPT else Action.DROP
        if reach is Reach.SOME:
            self.partial.add(kind)
        elif reach is Reach.UNKNOWN:
            self.maybe.add(kind)

    def mark_unknown(self, rule: RuleRef) -> None:
        self.maybe.update((Action.ACCEPT, Action.DROP))
        self.unknown.append(rule)

    def merge(self, other: "Walk") -> None:
        self.partial |= other.partial
        self.maybe |= other.maybe
        self.blocks.extend(other.blocks)
        self.unknown.extend(other.unknown)
        self.backend_reached |= other.backend_reached

    def outcome(self, base: Reach) -> Reach:
        """The reach of the walk's end, qualified by the partial and unknown verdicts met before it."""
        for end, kind, action, result in _QUALIFIERS:
            if base is end and action in getattr(self, kind):
                return result
        return base


class Layer:
    """An ordered ruleset (nftables, one iptables family, ufw's user rules, a firewalld zone)."""

    def base_chains(self, packet: Packet) -> List[Any]:
        """Keys of the chains on the input hook that see `packet`, in the order they run."""
        raise NotImplementedError

    def policy(self, key: Any) -> Action:
        """ACCEPT or DROP: what a base chain does with a packet no rule decided."""
        raise NotImplementedError

    def steps(self, key: Any, packet: Packet) -> Optional[List[Step]]:
        """The chain's rules as `packet` sees them; None when there is no such chain."""
        raise NotImplementedError

    def jump_key(self, key: Any, target: Optional[str]) -> Any:
        raise NotImplementedError

    def reach_of(self, rule: RuleRef, packet: Packet) -> Reach:
        """How one of this layer's rules matches another packet (for the SSH check)."""
        raise NotImplementedError


class RuleList(Layer):
    """One first-match chain with a default: ufw's user rules, a firewalld zone."""

    def __init__(self, steps_for: Callable[[Packet], List[Step]], default: Action) -> None:
        self._steps_for = steps_for
        self._default = default

    def base_chains(self, packet: Packet) -> List[Any]:
        return ["rules"]

    def policy(self, key: Any) -> Action:
        return self._default

    def steps(self, key: Any, packet: Packet) -> Optional[List[Step]]:
        return self._steps_for(packet)

    def jump_key(self, key: Any, target: Optional[str]) -> Any:
        return key

    def reach_of(self, rule: RuleRef, packet: Packet) -> Reach:
        return next((s.reach for s in self._steps_for(packet) if s.rule == rule), Reach.NONE)


@dataclass(frozen=True)
class Context:
    """What stays the same during one walk."""

    layer: Layer
    packet: Packet
    opaque: FrozenSet[Owner] = frozenset()


def walk_chain(ctx: Context, key: Any, depth: int = 0) -> Tuple[End, Walk]:
    """Follow ctx.packet through one chain; how it ended, and what it met."""
    walk = Walk()
    steps = ctx.layer.steps(key, ctx.packet) if depth <= MAX_DEPTH else None
    if steps is None:
        return End.UNKNOWN, walk
    for step in steps:
        end = _take(ctx, key, step, walk, depth)
        if end is not None:
            return end, walk
    return End.FALLTHROUGH, walk


def _take(ctx: Context, key: Any, step: Step, walk: Walk, depth: int) -> Optional[End]:
    """What one rule does to the walk: the End when it decides, None to go on."""
    if step.rule.owner in ctx.opaque:
        walk.backend_reached = True
        return End.BACKEND
    if step.reach is Reach.NONE or step.action is Action.CONTINUE:
        return None
    if step.action is Action.UNKNOWN:
        walk.mark_unknown(step.rule)
        return None
    if step.action in (Action.JUMP, Action.GOTO):
        return _enter(ctx, key, step, walk, depth)
    if step.action is Action.RETURN:
        return End.FALLTHROUGH if step.reach is Reach.ANY else None
    return _decide(ctx, step, walk)


def _decide(ctx: Context, step: Step, walk: Walk) -> Optional[End]:
    """An accept, drop or reject rule that matches some, all or maybe all of the packets."""
    if step.reach is Reach.UNKNOWN:
        walk.unknown.append(step.rule)
    elif step.action in BLOCKING and step.rule.owner is Owner.FOREIGN:
        walk.blocks.append(Block(ctx.layer, step, ctx.packet))
    if step.reach is Reach.ANY:
        return END_OF_ACTION[step.action]
    walk.note(step.reach, step.action)
    return None


def _enter(ctx: Context, key: Any, step: Step, walk: Walk, depth: int) -> Optional[End]:
    """A jump or goto: walk the target chain, then resume (jump) or end here (goto)."""
    end, sub = walk_chain(ctx, ctx.layer.jump_key(key, step.target), depth + 1)
    walk.merge(sub)
    if end is End.UNKNOWN:
        walk.mark_unknown(step.rule)
        return None
    if end is End.FALLTHROUGH:
        return End.FALLTHROUGH if step.action is Action.GOTO and step.reach is Reach.ANY else None
    if step.reach is Reach.ANY or end is End.BACKEND:
        return end
    walk.note(step.reach, ACTION_OF_END[end])
    return None


@dataclass
class LayerResult:
    reach: Reach
    walk: Walk


def evaluate(
    layer: Layer, packet: Packet, opaque: FrozenSet[Owner] = frozenset(), backend: Reach = Reach.UNKNOWN
) -> Optional[LayerResult]:
    """Every base chain of `layer` for `packet` (None when it has none). A chain that reaches a rule
    of an `opaque` owner takes `backend`, the reach that owner's own evaluation gave."""
    chains = layer.base_chains(packet)
    if not chains:
        return None
    total = Walk()
    outcomes = []
    for key in chains:
        end, walk = walk_chain(Context(layer, packet, opaque), key)
        if end is End.FALLTHROUGH:
            end = END_OF_ACTION[layer.policy(key)]
        outcomes.append(walk.outcome(backend if end is End.BACKEND else REACH_OF_END[end]))
        total.merge(walk)
    return LayerResult(all_pass(outcomes), total)


# --------------------------------------------------------------------------
# Ports
# --------------------------------------------------------------------------
def unique_ports(ports: Optional[List[Dict[str, Any]]]) -> List[Dict[str, Any]]:
    """Entries normalised to {port: int, proto, purpose}, first one wins per port/proto."""
    seen = set()
    result: List[Dict[str, Any]] = []
    for entry in ports or []:
        port = netshape.port_number(entry.get("port"))
        if port is None:
            raise ValueError(f"not a port: {entry!r}")
        proto = entry.get("proto") or "tcp"
        if (port, proto) in seen:
            continue
        seen.add((port, proto))
        result.append({"port": port, "proto": proto, "purpose": entry.get("purpose") or "port"})
    return result


def port_in_spec(port: int, spec: str) -> bool:
    """ufw/firewalld/iptables port spec: 'any', '22', '8000:8010', '8000-8010', '80,443,8000:8010'."""
    if spec in ("any", ""):
        return True
    for part in spec.split(","):
        low, _, high = part.strip().replace("-", ":").partition(":")
        bounds = (netshape.port_number(low), netshape.port_number(high or low))
        if None not in bounds and bounds[0] <= port <= bounds[1]:
            return True
    return False


def is_any_network(text: str) -> bool:
    """'any', 0.0.0.0/0 or ::/0: every source."""
    if text == "any":
        return True
    net = netshape.network(text)
    return net is not None and net.prefixlen == 0


def port_result(port: int, proto: str, families: Dict[str, Reach], why: str, vetoed: bool = False) -> Dict[str, Any]:
    """One entry of os_firewall.ports; `vetoed`: a foreign rule drops it in one family, so it is not reachable."""
    scope = Reach.NONE if vetoed else either_family(list(families.values()))
    allowed = None if scope is Reach.UNKNOWN else scope in (Reach.ANY, Reach.SOME)
    return {
        "port": port,
        "proto": proto,
        "allowed": allowed,
        "scope": scope.value,
        "families": {family: reach.value for family, reach in families.items()},
        "reason": why,
    }
