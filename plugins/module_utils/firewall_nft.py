# -*- coding: utf-8 -*-
# Copyright: cosyvoice-deploy maintainers
# Apache License 2.0
"""nftables, read from `nft -j list ruleset`: the kernel's whole packet filter.

Every base chain of type filter on the input hook sees a packet, in priority
order, and the packet must be accepted by all of them: the role's own table
(inet os_firewall), firewalld's tables, and the ip/ip6 `filter` tables through
which iptables-nft (ufw, Docker, `iptables -I INPUT ...`) writes its rules.

iptables-nft keeps some matches as `xt` expressions whose arguments JSON does
not show (multiport, conntrack, recent, comment, ...). When `iptables-nft-save`
output is given (`compat`), such a rule is classified from its iptables text
instead: iptables-nft-save lists a chain's rules in the same order as nft.
"""

from __future__ import annotations

import json
import shlex
from typing import Any, Callable, Dict, List, Optional, Tuple

from ansible_collections.cosyvoice.deploy.plugins.module_utils import firewall_iptables as ipt
from ansible_collections.cosyvoice.deploy.plugins.module_utils.firewall_model import (
    LABEL,
    PROTO_NUMBERS,
    TABLE_OWNERS,
    Action,
    Layer,
    Owner,
    Packet,
    Reach,
    RuleRef,
    Step,
    both,
    hit,
    owner_of,
)

Key = Tuple[str, str, str]  # (family, table, chain)

PRIORITY_NAMES = {"raw": -300, "mangle": -150, "dstnat": -100, "filter": 0, "security": 50, "srcnat": 100}
VERDICTS = {
    "accept": Action.ACCEPT,
    "drop": Action.DROP,
    "reject": Action.REJECT,
    "return": Action.RETURN,
    "jump": Action.JUMP,
    "goto": Action.GOTO,
    "queue": Action.UNKNOWN,
    "vmap": Action.UNKNOWN,
}
# Statements that do not decide anything about the packet.
PASSIVE = frozenset({"counter", "log", "limit", "quota", "set", "notrack", "mangle", "meta", "ct"})
# Transport protocols a port match does not apply to: such a match never sees our packet.
OTHER_L4 = frozenset({"icmp", "icmpv6", "sctp", "dccp", "udplite", "esp", "ah"})
# meta keys compared against what is known of the packet.
META_VALUES: Dict[str, Callable[[Packet], Tuple[Any, ...]]] = {
    "l4proto": lambda p: (p.proto, PROTO_NUMBERS[p.proto]),
    "nfproto": lambda p: (p.family,),
    "protocol": lambda p: (p.nf, p.family),
    "iiftype": lambda p: ("ether",),
}
# Statements to leave out of a rule's text: their values change on every packet.
SILENT = frozenset({"counter"})


# --------------------------------------------------------------------------
# Values and sets
# --------------------------------------------------------------------------
def value_in(value: Any, right: Any, lookup: Callable[[str], Optional[List[Any]]]) -> Optional[bool]:
    """Whether `value` (an int or a name) is in the right-hand side of a match (None: cannot tell)."""
    if isinstance(right, dict):
        if "set" in right:
            return any_in(value, right["set"])
        if "range" in right:
            low, high = right["range"]
            return all(isinstance(v, int) for v in (value, low, high)) and low <= value <= high
        return None
    if isinstance(right, list):
        return any_in(value, right)
    if isinstance(right, str) and right.startswith("@"):
        elems = lookup(right[1:])
        return None if elems is None else any_in(value, elems)
    return bool(value == right)


def any_in(value: Any, items: List[Any]) -> Optional[bool]:
    unknown = False
    for item in items:
        if isinstance(item, dict) and "elem" in item:
            item = item["elem"].get("val")
        if isinstance(item, dict) and "range" in item:
            found = value_in(value, item, lambda _name: None)
        elif isinstance(item, (dict, list)):
            unknown = True
            continue
        else:
            found = value == item
        if found:
            return True
    return None if unknown else False


def first_hit(values: Tuple[Any, ...], right: Any, lookup: Callable[[str], Optional[List[Any]]]) -> Optional[bool]:
    """True when one of the packet's names for a thing is in `right`."""
    results = [value_in(value, right, lookup) for value in values]
    if True in results:
        return True
    return None if None in results else False


# --------------------------------------------------------------------------
# Matches: what one `match` expression covers
# --------------------------------------------------------------------------
def _payload_reach(payload: Dict[str, Any], op: str, right: Any, packet: Packet, lookup: Any) -> Reach:
    proto, field = payload.get("protocol"), payload.get("field")
    if proto in ("tcp", "udp", "th") and field in ("dport", "sport"):
        if proto != "th" and proto != packet.proto:
            return Reach.NONE  # `tcp dport ...` implies `meta l4proto tcp`, whatever the operator
        return Reach.SOME if field == "sport" else hit(value_in(packet.port, right, lookup), op == "!=")
    if proto in ("ip", "ip6") and field in ("saddr", "daddr"):
        if proto != packet.nf:
            return Reach.NONE  # `ip saddr ...` implies an IPv4 packet, whatever the operator
        every = isinstance(right, dict) and right.get("prefix", {}).get("len") == 0
        return Reach.ANY if field == "saddr" and op != "!=" and every else Reach.SOME
    if proto in OTHER_L4:
        return hit(False, op == "!=")
    return Reach.UNKNOWN


def _meta_reach(meta: Dict[str, Any], op: str, right: Any, packet: Packet, lookup: Any) -> Reach:
    key = meta.get("key")
    if key in ("iif", "iifname"):
        return hit(False, op == "!=") if right == "lo" else Reach.SOME
    values = META_VALUES.get(str(key))
    if values is None:
        return Reach.UNKNOWN
    return hit(first_hit(values(packet), right, lookup), op == "!=")


def _ct_reach(ct: Dict[str, Any], op: str, right: Any, packet: Packet, lookup: Any) -> Reach:
    if ct.get("key") != "state":
        return Reach.UNKNOWN
    return hit(value_in("new", right, lookup), op == "!=")


LEFT_KINDS = (("payload", _payload_reach), ("meta", _meta_reach), ("ct", _ct_reach))


def match_reach(expr: Dict[str, Any], packet: Packet, lookup: Any) -> Reach:
    """ANY (matches every such packet), NONE, SOME (depends on source/interface/address) or UNKNOWN."""
    op = expr.get("op", "==")
    left, right = expr.get("left"), expr.get("right")
    if op not in ("==", "!=", "in") or not isinstance(left, dict):
        return Reach.UNKNOWN
    for kind, classify in LEFT_KINDS:
        if kind in left:
            return classify(left[kind], op, right, packet, lookup)
    return Reach.UNKNOWN


def statement(name: str, body: Any) -> Optional[Tuple[Action, Optional[str]]]:
    """(action, jump target) of a statement; None for one that matches in a way not modelled (xt match, fib)."""
    if name in VERDICTS:
        target = body.get("target") if isinstance(body, dict) else None
        return VERDICTS[name], target
    if name in PASSIVE:
        return Action.CONTINUE, None
    if name == "xt" and isinstance(body, dict) and body.get("type") == "target":
        return ipt.TARGETS.get(str(body.get("name")), Action.UNKNOWN), None
    return None


def scan(exprs: List[Any], packet: Packet, lookup: Any) -> Tuple[Reach, Action, Optional[str]]:
    """A rule's expressions, left to right: the reach of its matches and its first deciding statement."""
    reach = Reach.ANY
    for expr in exprs:
        if not isinstance(expr, dict) or not expr:
            continue
        name, body = next(iter(expr.items()))
        if name == "match":
            reach = both(reach, match_reach(body, packet, lookup))
            if reach is Reach.NONE:
                return reach, Action.CONTINUE, None
            continue
        found = statement(name, body)
        if found is None:
            reach = both(reach, Reach.UNKNOWN)
        elif found[0] is not Action.CONTINUE:
            return reach, found[0], found[1]
    return reach, Action.CONTINUE, None


# --------------------------------------------------------------------------
# Text of a rule (close to `nft list ruleset`, without counters)
# --------------------------------------------------------------------------
def render_value(value: Any) -> str:
    if isinstance(value, list):
        return "{ " + ", ".join(render_value(item) for item in value) + " }"
    if not isinstance(value, dict):
        return str(value)
    if "set" in value:
        return render_value(value["set"])
    if "prefix" in value:
        return f"{value['prefix'].get('addr')}/{value['prefix'].get('len')}"
    if "range" in value:
        return "-".join(render_value(item) for item in value["range"])
    return json.dumps(value, sort_keys=True)


def _render_left(left: Any) -> str:
    if isinstance(left, dict) and "payload" in left:
        return f"{left['payload'].get('protocol')} {left['payload'].get('field')}"
    for key in ("meta", "ct"):
        if isinstance(left, dict) and key in left:
            return f"{key} {left[key].get('key')}"
    return render_value(left)


def render_expr(name: str, body: Any) -> str:
    if name == "match":
        op = "" if body.get("op") in ("==", "in") else f"{body.get('op')} "
        return f"{_render_left(body.get('left'))} {op}{render_value(body.get('right'))}"
    if name in ("jump", "goto") and isinstance(body, dict):
        return f"{name} {body.get('target')}"
    if name == "xt" and isinstance(body, dict):
        return f"xt {body.get('type')} \"{body.get('name')}\""
    return "" if name in SILENT else name


def render(rule: Dict[str, Any]) -> str:
    parts = [render_expr(*next(iter(e.items()))) for e in rule.get("expr", []) if isinstance(e, dict) and e]
    text = " ".join(part for part in parts if part)
    return f'{text} comment "{rule["comment"]}"' if rule.get("comment") else text


# --------------------------------------------------------------------------
# The ruleset as a layer
# --------------------------------------------------------------------------
def _priority(value: Any) -> int:
    return value if isinstance(value, int) else PRIORITY_NAMES.get(str(value), 0)


def _has_xt(rule: Dict[str, Any]) -> bool:
    return any(isinstance(e, dict) and "xt" in e for e in rule.get("expr", []))


def _target(rule: Dict[str, Any]) -> Optional[str]:
    for expr in rule.get("expr", []):
        for name in ("jump", "goto"):
            if isinstance(expr, dict) and isinstance(expr.get(name), dict):
                return str(expr[name].get("target"))
    return None


class NftRuleset(Layer):
    """`nft -j list ruleset`, optionally with iptables-nft-save output for the xt rules."""

    def __init__(self, objects: List[Dict[str, Any]], compat: Optional[Dict[str, str]] = None) -> None:
        self.tables: List[Tuple[str, str]] = []
        self.chains: Dict[Key, Dict[str, Any]] = {}
        self.rules: Dict[Key, List[Dict[str, Any]]] = {}
        self.sets: Dict[Key, List[Any]] = {}
        for obj in objects:
            self._add(obj)
        self.compat = self._compat(compat or {})
        self.refs = {
            key: [self._ref(key, index, rule) for index, rule in enumerate(rules)] for key, rules in self.rules.items()
        }

    @classmethod
    def from_json(cls, text: Optional[str], compat: Optional[Dict[str, str]] = None) -> Optional["NftRuleset"]:
        """None when the text is not nft's JSON."""
        try:
            document = json.loads(text or "{}")
        except ValueError:
            return None
        objects = document.get("nftables") if isinstance(document, dict) else None
        return cls(objects, compat) if isinstance(objects, list) else None

    def _add(self, obj: Dict[str, Any]) -> None:
        if "table" in obj:
            self.tables.append((obj["table"]["family"], obj["table"]["name"]))
        elif "chain" in obj:
            chain = obj["chain"]
            key = (chain["family"], chain["table"], chain["name"])
            self.chains[key] = chain
            self.rules.setdefault(key, [])
        elif "rule" in obj:
            rule = obj["rule"]
            self.rules.setdefault((rule["family"], rule["table"], rule["chain"]), []).append(rule)
        elif "set" in obj:
            nset = obj["set"]
            self.sets[(nset["family"], nset["table"], nset["name"])] = list(nset.get("elem", []))

    def _compat(self, saves: Dict[str, str]) -> Dict[Key, List[ipt.IptRule]]:
        """iptables-nft-save rules per chain, kept only where they pair one to one with nft's."""
        paired: Dict[Key, List[ipt.IptRule]] = {}
        for family, text in saves.items():
            nf = "ip" if family == "ipv4" else "ip6"
            for name, table in ipt.parse_save(text).items():
                for chain, rules in table.rules.items():
                    if len(rules) == len(self.rules.get((nf, name, chain), [])):
                        paired[(nf, name, chain)] = rules
        return paired

    def _ref(self, key: Key, index: int, rule: Dict[str, Any]) -> RuleRef:
        paired = self.compat.get(key) if _has_xt(rule) else None
        handle = rule.get("handle")
        command = " ".join(shlex.quote(str(part)) for part in ("nft", "delete", "rule", *key, "handle", handle))
        return RuleRef(
            source="nft",
            table_family=key[0],
            table=key[1],
            chain=key[2],
            text=paired[index].line if paired else render(rule),
            owner=owner_of(key[1], key[2], _target(rule)),
            handle=handle,
            position=index + 1,
            remove_command=command if handle is not None else None,
        )

    def has_table(self, family: str, name: str) -> bool:
        return (family, name) in self.tables

    def managed(self) -> bool:
        """The role's own table is loaded."""
        return self.has_table("inet", LABEL)

    def input_chains(self) -> List[Key]:
        return [k for k, c in self.chains.items() if c.get("hook") == "input" and c.get("type", "filter") == "filter"]

    def base_chains(self, packet: Packet) -> List[Key]:
        keys = [key for key in self.input_chains() if key[0] in ("inet", packet.nf)]
        return sorted(keys, key=lambda key: _priority(self.chains[key].get("prio", 0)))

    def policy(self, key: Key) -> Action:
        return Action.ACCEPT if self.chains[key].get("policy", "accept") == "accept" else Action.DROP

    def step(self, key: Key, index: int, packet: Packet) -> Step:
        rule, ref = self.rules[key][index], self.refs[key][index]
        paired = self.compat.get(key) if _has_xt(rule) else None
        if paired:
            found = ipt.classify(paired[index], packet, lambda name: (key[0], key[1], name) in self.chains)
            return Step(found.reach, found.action, ref, found.target)
        reach, action, target = scan(rule.get("expr", []), packet, lambda name: self.sets.get((key[0], key[1], name)))
        return Step(reach, action, ref, target)

    def steps(self, key: Key, packet: Packet) -> Optional[List[Step]]:
        if key not in self.chains:
            return None
        return [self.step(key, index, packet) for index in range(len(self.rules.get(key, [])))]

    def jump_key(self, key: Key, target: Optional[str]) -> Key:
        return (key[0], key[1], target or "")

    def reach_of(self, rule: RuleRef, packet: Packet) -> Reach:
        key = (rule.table_family, rule.table, rule.chain)
        if key not in self.rules or not rule.position:
            return Reach.NONE
        return self.step(key, rule.position - 1, packet).reach


class OwnedTables(Layer):
    """The base chains of the tables one manager owns: what that manager alone decides (the role's table)."""

    def __init__(self, ruleset: NftRuleset, owner: Owner) -> None:
        self.ruleset = ruleset
        self.owner = owner

    def base_chains(self, packet: Packet) -> List[Key]:
        return [key for key in self.ruleset.base_chains(packet) if TABLE_OWNERS.get(key[1]) is self.owner]

    def policy(self, key: Key) -> Action:
        return self.ruleset.policy(key)

    def steps(self, key: Key, packet: Packet) -> Optional[List[Step]]:
        return self.ruleset.steps(key, packet)

    def jump_key(self, key: Key, target: Optional[str]) -> Key:
        return self.ruleset.jump_key(key, target)

    def reach_of(self, rule: RuleRef, packet: Packet) -> Reach:
        return self.ruleset.reach_of(rule, packet)
