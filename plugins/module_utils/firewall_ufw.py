# -*- coding: utf-8 -*-
# Copyright: cosyvoice-deploy maintainers
# Apache License 2.0
"""ufw, read from `ufw status verbose` and /etc/ufw/user.rules + user6.rules.

ufw keeps every rule a person (or the role) added as a `### tuple ###` line in
its user rules files: action proto dport dst sport src [dapp sapp]
direction[_iface] [comment=HEX]. Evaluated first match wins, then the default
incoming policy that `ufw status verbose` prints.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from ansible_collections.cosyvoice.deploy.plugins.module_utils.firewall_model import (
    LABEL,
    Action,
    Owner,
    Packet,
    Reach,
    RuleList,
    RuleRef,
    Step,
    is_any_network,
    port_in_spec,
)

TUPLE_PREFIX = "### tuple ###"
ACTIONS = {"allow": Action.ACCEPT, "limit": Action.ACCEPT, "deny": Action.DROP, "reject": Action.REJECT}
_ACTIVE = re.compile(r"^Status: active", re.M)
_DEFAULT = re.compile(r"Default: (\w+) \(incoming\)")
_IPV6 = re.compile(r'^IPV6="?yes', re.M)
_INPUT_POLICY = re.compile(r'^DEFAULT_INPUT_POLICY="?(\w+)', re.M)


@dataclass(frozen=True)
class UfwStatus:
    active: bool
    default_incoming: Optional[str]  # deny | reject | allow, as ufw says


def parse_status(text: Optional[str]) -> UfwStatus:
    """The header of `ufw status verbose`."""
    found = _DEFAULT.search(text or "")
    return UfwStatus(bool(_ACTIVE.search(text or "")), found.group(1) if found else None)


def ipv6_enabled(default_text: Optional[str]) -> bool:
    """IPV6=yes in /etc/default/ufw."""
    return bool(_IPV6.search(default_text or ""))


def default_input_policy(default_text: Optional[str]) -> Optional[str]:
    """DEFAULT_INPUT_POLICY of /etc/default/ufw (DROP, ACCEPT, REJECT); None when not set."""
    found = _INPUT_POLICY.search(default_text or "")
    return found.group(1).upper() if found else None


def _decode_comment(raw: str) -> str:
    try:
        return binascii.unhexlify(raw).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return raw


def _tuple(fields: List[str]) -> Optional[Dict[str, Any]]:
    note = ""
    if fields and fields[-1].startswith("comment="):
        note = _decode_comment(fields.pop()[len("comment=") :])
    if len(fields) not in (7, 9):
        return None
    action, proto, dport, dst, sport, src = fields[:6]
    direction, _, iface = fields[-1].partition("_")
    return {
        "action": action,
        "proto": proto,
        "dport": dport,
        "dst": dst,
        "sport": sport,
        "src": src,
        "direction": direction,
        "interface": iface,
        "app": fields[6] if len(fields) == 9 else "",
        "family": "ipv6" if ":" in dst else "ipv4",
        "comment": note,
    }


def ufw_tuples(text: Optional[str]) -> List[Dict[str, Any]]:
    """Every `### tuple ###` line of ufw's user rules, in file order."""
    result = []
    for line in (text or "").splitlines():
        if line.startswith(TUPLE_PREFIX):
            item = _tuple(line[len(TUPLE_PREFIX) :].split())
            if item is not None:
                result.append(item)
    return result


def managed(tuples: List[Dict[str, Any]]) -> bool:
    """Rules labelled by the role are present."""
    return any(item["comment"].startswith(LABEL) for item in tuples)


def tuple_reach(item: Dict[str, Any], packet: Packet) -> Reach:
    """How one user rule matches the packet: only inbound rules of its family, port and protocol count;
    one limited to a source, destination, source port or interface matches SOME."""
    if item["family"] != packet.family or not item["direction"].startswith("in"):
        return Reach.NONE
    if item["proto"] not in ("any", packet.proto) or not port_in_spec(packet.port, item["dport"]):
        return Reach.NONE
    unlimited = (
        is_any_network(item["src"]) and is_any_network(item["dst"]) and item["sport"] == "any" and not item["interface"]
    )
    return Reach.ANY if unlimited else Reach.SOME


def _ref(item: Dict[str, Any], position: int) -> RuleRef:
    text = f"{item['action']} {item['proto']} {item['dport']} from {item['src']} {item['direction']}"
    return RuleRef("ufw", item["family"], "user", "ufw-user-input", text, Owner.UFW, position=position)


def layer(tuples: List[Dict[str, Any]], default_incoming: Optional[str]) -> RuleList:
    """ufw's user rules as a first-match chain with the default incoming policy."""
    refs = [_ref(item, index + 1) for index, item in enumerate(tuples)]

    def steps_for(packet: Packet) -> List[Step]:
        return [
            Step(tuple_reach(item, packet), ACTIONS.get(item["action"], Action.UNKNOWN), ref)
            for item, ref in zip(tuples, refs)
        ]

    return RuleList(steps_for, Action.ACCEPT if default_incoming == "allow" else Action.DROP)
