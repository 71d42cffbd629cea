# -*- coding: utf-8 -*-
# Copyright: cosyvoice-deploy maintainers
# Apache License 2.0
"""The host's firewall as one answer: os_firewall_facts' (and os_firewall_state's) content.

Two kinds of evidence are combined:

* the firewall manager in charge (the backend): firewalld if it runs, else ufw
  if active, else the nftables ruleset, else legacy iptables, else nothing.
  ufw and firewalld are evaluated with their own semantics (user rules, zone);
* the kernel's whole packet filter: every nftables base chain on the input
  hook (which holds iptables-nft's rules too) and legacy iptables' INPUT.
  Walking it, the rules the backend wrote stand for the backend's own answer
  (opaque); every other rule is foreign. A foreign rule that drops or rejects
  a port before the backend sees it wins, and is listed in `foreign_blocks`
  with a command that removes exactly it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, FrozenSet, List, Optional

from ansible_collections.cosyvoice.deploy.plugins.module_utils import firewall_firewalld as fwd
from ansible_collections.cosyvoice.deploy.plugins.module_utils import firewall_iptables as ipt
from ansible_collections.cosyvoice.deploy.plugins.module_utils import firewall_ufw as ufw
from ansible_collections.cosyvoice.deploy.plugins.module_utils.firewall_model import (
    FAMILIES,
    MANAGER_NAMES,
    VERDICT_WORDS,
    Action,
    Block,
    Layer,
    Owner,
    Packet,
    Reach,
    Walk,
    all_pass,
    evaluate,
    port_result,
    reason,
    unique_ports,
)
from ansible_collections.cosyvoice.deploy.plugins.module_utils.firewall_nft import NftRuleset, OwnedTables

# posture.default_incoming: each backend's word -> one vocabulary.
POSTURE_DEFAULTS = {"deny": "deny", "drop": "drop", "reject": "reject", "allow": "allow", "accept": "allow"}


@dataclass
class Probes:
    """What the host showed (os_firewall_facts gathers it with read-only commands)."""

    root: bool = True
    firewalld_active: bool = False
    firewalld_zone: Optional[str] = None  # `firewall-cmd --zone=Z --list-all` of the zone in force
    firewalld_services: Dict[str, str] = field(default_factory=dict)  # name -> `firewall-cmd --info-service`
    ufw_status: Optional[str] = None  # `ufw status verbose`; None: ufw is not installed
    ufw_rules: Optional[str] = None  # /etc/ufw/user.rules + user6.rules
    nft_json: Optional[str] = None  # `nft -j list ruleset`; None: nft is not installed
    # family -> iptables-nft-save: pairs xt rules with the nft JSON, or is the ruleset itself without nft
    iptables_nft: Dict[str, str] = field(default_factory=dict)
    iptables_legacy: Dict[str, str] = field(default_factory=dict)  # family -> iptables-legacy-save


@dataclass
class Backend:
    """The firewall manager in charge, and how to ask it about a packet."""

    name: str  # ufw | firewalld | nftables | iptables | none | unknown
    active: Optional[bool]
    default_incoming: Optional[str]
    managed: bool
    why: str
    layer: Optional[Layer] = None  # its own rules (ufw, firewalld)
    owner: Optional[Owner] = None  # whose rules in the kernel's ruleset are its own
    fixed: Reach = Reach.ANY  # the answer when it has no rules of its own to ask

    def reach(self, packet: Packet) -> Reach:
        if self.layer is None:
            return self.fixed
        result = evaluate(self.layer, packet)
        return result.reach if result else self.fixed

    @property
    def opaque(self) -> FrozenSet[Owner]:
        return frozenset({self.owner}) if self.owner else frozenset()


@dataclass
class Kernel:
    """The kernel's packet filter, as far as it could be read."""

    nft: Optional[NftRuleset] = None
    nft_unreadable: bool = False
    legacy: List[Layer] = field(default_factory=list)

    @property
    def layers(self) -> List[Layer]:
        return ([self.nft] if self.nft else []) + self.legacy

    def nft_filters(self) -> bool:
        return bool(self.nft and self.nft.input_chains())


@dataclass
class FamilyResult:
    """One address family of one port: the final reach, the backend's own answer, what the walks met."""

    reach: Reach
    own: Reach
    walk: Walk

    def decisive_blocks(self) -> List[Block]:
        """Foreign rules that made the answer: one that dropped all of the packets, or some while others pass."""
        return [
            block
            for block in self.walk.blocks
            if block.step.reach is Reach.ANY or (block.step.reach is Reach.SOME and self.reach is Reach.SOME)
        ]

    @property
    def vetoed(self) -> bool:
        """The backend lets the packets in, a foreign rule drops them all first."""
        foreign = any(block.step.reach is Reach.ANY for block in self.walk.blocks)
        return foreign and self.reach is Reach.NONE and self.own in (Reach.ANY, Reach.SOME)


# --------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------
def read_kernel(probes: Probes) -> Kernel:
    kernel = Kernel()
    if probes.nft_json is not None:
        kernel.nft = NftRuleset.from_json(probes.nft_json, probes.iptables_nft)
        kernel.nft_unreadable = kernel.nft is None
    for family in FAMILIES:
        tables = ipt.parse_save(probes.iptables_legacy.get(family))
        if ipt.has_rules(tables):
            kernel.legacy.append(ipt.IptablesLayer(family, tables))
        # Without the nft tool (ufw hosts often lack it) iptables-nft-save shows the same
        # nf_tables rules as iptables text: walk those instead of nothing.
        if probes.nft_json is None:
            tables = ipt.parse_save(probes.iptables_nft.get(family))
            if ipt.has_rules(tables):
                kernel.legacy.append(ipt.IptablesLayer(family, tables, source="iptables-nft"))
    return kernel


def _firewalld_backend(probes: Probes) -> Optional[Backend]:
    zone = fwd.parse_zone(probes.firewalld_zone)
    if zone is None:
        return None
    services = {name: fwd.parse_service(text) for name, text in probes.firewalld_services.items()}
    default = fwd.target_of(zone)[1]
    why = reason("firewalld", zone=zone.name, target=zone.target)
    return Backend("firewalld", True, default, fwd.managed(zone), why, fwd.layer(zone, services), Owner.FIREWALLD)


def _ufw_backend(probes: Probes) -> Optional[Backend]:
    status = ufw.parse_status(probes.ufw_status)
    if not status.active:
        return None
    tuples = ufw.ufw_tuples(probes.ufw_rules)
    why = reason("ufw", default=status.default_incoming)
    layer = ufw.layer(tuples, status.default_incoming)
    return Backend("ufw", True, status.default_incoming, ufw.managed(tuples), why, layer, Owner.UFW)


def _kernel_backend(probes: Probes, kernel: Kernel) -> Backend:
    """No manager with rules of its own runs: the kernel's ruleset is the answer (the role's table, if loaded,
    stands for what the role decides)."""
    managed = bool(kernel.nft and kernel.nft.managed()) or ufw.managed(ufw.ufw_tuples(probes.ufw_rules))
    if kernel.nft is not None and kernel.nft_filters():
        policies = {kernel.nft.policy(key) for key in kernel.nft.input_chains()}
        default = "drop" if Action.DROP in policies else "allow"
        if kernel.nft.managed():
            role = OwnedTables(kernel.nft, Owner.OS_FIREWALL)
            return Backend("nftables", True, default, managed, reason("nftables"), role, Owner.OS_FIREWALL)
        return Backend("nftables", True, default, managed, reason("nftables"))
    if kernel.nft_unreadable:
        return Backend("unknown", None, None, managed, reason("nft_unreadable"), fixed=Reach.UNKNOWN)
    if kernel.legacy:
        policies = {layer.policy(("filter", "INPUT")) for layer in kernel.legacy}
        policy = Action.DROP if Action.DROP in policies else Action.ACCEPT
        default = "allow" if policy is Action.ACCEPT else "drop"
        return Backend("iptables", True, default, managed, reason("iptables", policy=policy.value.upper()))
    return Backend("none", False, "allow", managed, _nothing_reason(probes, kernel))


def _nothing_reason(probes: Probes, kernel: Kernel) -> str:
    if probes.ufw_status is not None:
        return reason("ufw_inactive")
    if kernel.nft is not None:
        return reason("no_input_chain")
    return reason("nothing_found")


def choose_backend(probes: Probes, kernel: Kernel) -> Backend:
    """Precedence follows what filters packets: firewalld if running, else ufw if active, else the kernel's ruleset."""
    if not probes.root:
        return Backend("unknown", None, None, False, reason("needs_root"), fixed=Reach.UNKNOWN)
    found = (_firewalld_backend(probes) if probes.firewalld_active else None) or _ufw_backend(probes)
    return found or _kernel_backend(probes, kernel)


# --------------------------------------------------------------------------
# Evaluating
# --------------------------------------------------------------------------
def family_result(backend: Backend, kernel: Kernel, packet: Packet) -> FamilyResult:
    """The backend's answer, and every layer of the kernel's filter; a packet must pass all."""
    own = backend.reach(packet)
    walk = Walk()
    outcomes = []
    for layer in kernel.layers:
        result = evaluate(layer, packet, backend.opaque, own)
        if result is not None:
            outcomes.append(result.reach)
            walk.merge(result.walk)
    if (backend.layer is not None and not walk.backend_reached) or backend.fixed is Reach.UNKNOWN:
        outcomes.append(own)  # its rules live where no walk went, or nothing could be read
    return FamilyResult(all_pass(outcomes) if outcomes else own, own, walk)


def port_reason(backend: Backend, results: Dict[str, FamilyResult]) -> str:
    """The backend's reason, naming the foreign rule that blocks the port or the rule that could not be read."""
    blocks = [block for result in results.values() for block in result.decisive_blocks()]
    if blocks:
        rule = blocks[0].step.rule
        verdict = VERDICT_WORDS[blocks[0].step.action]
        manager = MANAGER_NAMES.get(backend.name, "the firewall manager")
        why = reason(
            "foreign_block", base=backend.why, verdict=verdict, manager=manager, where=rule.where(), rule=rule.text
        )
        return why
    unknown = [rule for result in results.values() if result.reach is Reach.UNKNOWN for rule in result.walk.unknown]
    if unknown:
        return reason("unknown_rule", base=backend.why, where=unknown[0].where(), rule=unknown[0].text)
    return backend.why


def port_entry(entry: Dict[str, Any], backend: Backend, results: Dict[str, FamilyResult]) -> Dict[str, Any]:
    """One entry of os_firewall.ports. A family that the backend lets in but a foreign rule drops makes the
    whole port unreachable (scope none): clients of that family time out, whatever the other family does."""
    families = {family: result.reach for family, result in results.items()}
    vetoed = any(result.vetoed for result in results.values())
    return port_result(entry["port"], entry["proto"], families, port_reason(backend, results), vetoed)


def foreign_block(block: Block, ssh_ports: List[int]) -> Dict[str, Any]:
    """One entry of os_firewall.foreign_blocks. A rule that also matches SSH traffic is never proposed for removal."""
    rule, packet = block.step.rule, block.packet
    ssh = [
        port for port in ssh_ports if block.layer.reach_of(rule, Packet(packet.family, "tcp", port)) is not Reach.NONE
    ]
    return {
        "port": packet.port,
        "proto": packet.proto,
        "family": packet.family,
        "source": rule.source,
        "table_family": rule.table_family,
        "table": rule.table,
        "chain": rule.chain,
        "handle": rule.handle,
        "position": rule.position,
        "rule": rule.text,
        "verdict": block.step.action.value,
        "match": "all" if block.step.reach is Reach.ANY else "some",
        "remove_command": None if ssh else rule.remove_command,
        "kept_because": reason("kept_for_ssh", port=ssh[0]) if ssh else None,
    }


def foreign_blocks(evaluated: List[Dict[str, FamilyResult]], ssh_ports: List[int]) -> List[Dict[str, Any]]:
    """Foreign rules that drop or reject a requested port (never for the SSH ports), each once per port and family."""
    entries: List[Dict[str, Any]] = []
    for results in evaluated:
        for result in results.values():
            for block in result.walk.blocks:
                if block.packet.proto == "tcp" and block.packet.port in ssh_ports:
                    continue
                entry = foreign_block(block, ssh_ports)
                if entry not in entries:
                    entries.append(entry)
    return entries


def posture(backend: Backend, kernel: Kernel) -> Dict[str, Any]:
    """Whether anything filters incoming traffic, and the default for what no rule allows."""
    filtering = backend.active is True or kernel.nft_filters() or bool(kernel.legacy)
    return {
        "firewall_active": None if backend.name == "unknown" and backend.active is None else filtering,
        "default_incoming": POSTURE_DEFAULTS.get(str(backend.default_incoming), "unknown"),
        "backend": backend.name,
    }


def host_status(
    probes: Probes, ports: Optional[List[Dict[str, Any]]], ssh_ports: Optional[List[int]] = None
) -> Dict[str, Any]:
    """os_firewall: which firewall is in charge, whether each port is allowed, what else blocks it."""
    ssh = list(ssh_ports if ssh_ports is not None else [22])
    kernel = read_kernel(probes) if probes.root else Kernel()
    backend = choose_backend(probes, kernel)
    entries, evaluated = unique_ports(ports), []
    for entry in entries:
        packets = {family: Packet(family, entry["proto"], entry["port"]) for family in FAMILIES}
        evaluated.append({family: family_result(backend, kernel, packet) for family, packet in packets.items()})
    results = [port_entry(entry, backend, families) for entry, families in zip(entries, evaluated)]
    return {
        "backend": backend.name,
        "active": backend.active,
        "managed": backend.managed,
        "default_incoming": backend.default_incoming,
        "allowed_ports": [{"port": p["port"], "proto": p["proto"]} for p in results if p["allowed"]],
        "ports": results,
        "foreign_blocks": foreign_blocks(evaluated, ssh),
        "posture": posture(backend, kernel),
    }
