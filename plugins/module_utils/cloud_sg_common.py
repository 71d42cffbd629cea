# -*- coding: utf-8 -*-
# Copyright: cosyvoice-deploy maintainers
# Apache License 2.0
"""Provider-neutral logic of the SDK-based security group modules (Aliyun, Tencent).

A provider adapter (``CloudSgProvider``) only translates API calls; everything the role
promises is decided here, where it is unit-tested without any SDK:

* which instance is the host's (exactly one match by id or address, else a clear error);
* the wanted ingress rules (ports x CIDRs, each described ``<prefix><purpose>``);
* the plan: rules to add, rules *of ours* (description starting with the prefix) to remove;
  any other rule, in our group or elsewhere, is never touched;
* refusing a same-named group without the marker tag; check mode (no write call at all);
* the neutral instance record (see ``plugins/filter/cloud_sg.py``) for ``tasks/check.yml``.

A current rule, as adapters report it::

    {"proto": "tcp", "from_port": 7860, "to_port": 7860, "cidr": "0.0.0.0/0",
     "description": "cosyvoice app", "allow": True, "ref": <provider handle for removal>}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

#: Rules whose description starts with this are the role's own (added, and removed when stale).
DEFAULT_PREFIX = "cosyvoice "

RuleKey = tuple[str, Any, Any, str]


class CloudSgError(Exception):
    """A failure with a message meant for the user (what is wrong, what to change)."""


class CloudSgProvider:
    """What an adapter implements; every method is one or a few API calls.

    ``writes`` records each write call made, so an error can say whether anything changed.
    """

    label = "cloud"  # e.g. "Alibaba Cloud ECS"
    instance_word = "instance"

    def __init__(self) -> None:
        self.writes: list[str] = []

    def find_instances(self, instance_id: str, address: str) -> list[dict[str, Any]]:
        """Neutral records (groups without rules) of the instances with this id or address."""
        raise NotImplementedError

    def group_rules(self, group_id: str) -> tuple[str, list[dict[str, Any]]]:
        """(group name, current ingress rules) of one group."""
        raise NotImplementedError

    def find_groups(self, name: str, network: str) -> list[dict[str, Any]]:
        """Groups named ``name`` where the instance's network can use them: [{id, name, tags}]."""
        raise NotImplementedError

    def create_group(self, name: str, description: str, network: str, tags: Mapping[str, str]) -> str:
        raise NotImplementedError

    def add_rules(self, group_id: str, rules: Sequence[Mapping[str, Any]]) -> None:
        raise NotImplementedError

    def remove_rules(self, group_id: str, rules: Sequence[Mapping[str, Any]]) -> None:
        raise NotImplementedError

    def attach(self, instance: Mapping[str, Any], group_id: str) -> None:
        """Add the group to the instance, keeping the groups it has."""
        raise NotImplementedError


def desired_rules(
    ports: Sequence[Mapping[str, Any]],
    cidrs: Sequence[str],
    cidrs_ipv6: Sequence[str],
    prefix: str = DEFAULT_PREFIX,
) -> list[dict[str, Any]]:
    """Every (port, CIDR) pair as a rule described ``<prefix><purpose>``."""
    rules: list[dict[str, Any]] = []
    for entry in ports:
        port = int(entry["port"])
        proto = str(entry.get("proto") or "tcp").lower()
        purpose = str(entry.get("purpose") or f"{port}/{proto}")
        for cidr in [*cidrs, *cidrs_ipv6]:
            rules.append(
                {
                    "proto": proto,
                    "from_port": port,
                    "to_port": port,
                    "cidr": str(cidr),
                    "description": f"{prefix}{purpose}",
                }
            )
    return rules


def rule_key(rule: Mapping[str, Any]) -> RuleKey:
    return (str(rule["proto"]), rule.get("from_port"), rule.get("to_port"), str(rule["cidr"]))


def is_ours(rule: Mapping[str, Any], prefix: str = DEFAULT_PREFIX) -> bool:
    return str(rule.get("description") or "").startswith(prefix)


def plan_rules(
    current: Sequence[Mapping[str, Any]],
    desired: Sequence[Mapping[str, Any]],
    prefix: str = DEFAULT_PREFIX,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(to add, to remove): wanted rules no allow rule has yet; our rules nobody wants.

    A wanted rule already present as someone else's allow rule is not added again (the
    clouds refuse duplicates); rules that are not ours are never removed.
    """
    present = {rule_key(r) for r in current if r.get("allow", True)}
    wanted = {rule_key(r) for r in desired}
    to_add: list[dict[str, Any]] = []
    seen: set[RuleKey] = set()
    for rule in desired:
        key = rule_key(rule)
        if key not in present and key not in seen:
            to_add.append(dict(rule))
        seen.add(key)
    to_remove = [dict(r) for r in current if _stale(r, wanted, prefix)]
    return to_add, to_remove


def _stale(rule: Mapping[str, Any], wanted: set[RuleKey], prefix: str) -> bool:
    """One of our rules that is no longer wanted (or that someone turned into a deny rule)."""
    return is_ours(rule, prefix) and (rule_key(rule) not in wanted or not rule.get("allow", True))


def neutral_rules(current: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The allow rules in the neutral shape ``{proto, from_port, to_port, cidr}``."""
    return [
        {"proto": r["proto"], "from_port": r.get("from_port"), "to_port": r.get("to_port"), "cidr": r["cidr"]}
        for r in current
        if r.get("allow", True)
    ]


def describe_rule(rule: Mapping[str, Any]) -> str:
    """``tcp 7860 from 0.0.0.0/0 (cosyvoice app)`` - one line of the diff."""
    low, high = rule.get("from_port"), rule.get("to_port")
    ports = "all ports" if low is None else (str(low) if low == high else f"{low}-{high}")
    verdict = "" if rule.get("allow", True) else " DENY"
    desc = f" ({rule['description']})" if rule.get("description") else ""
    return f"{rule['proto']} {ports} from {rule['cidr']}{verdict}{desc}"


def _rule_lines(rules: Sequence[Mapping[str, Any]]) -> str:
    return "".join(f"{line}\n" for line in sorted(describe_rule(r) for r in rules))


def _one_instance(provider: CloudSgProvider, matches: list[dict[str, Any]], where: Mapping[str, str]) -> dict[str, Any]:
    """The single match, or a CloudSgError that says what to set."""
    region, id_var, address, instance_id = where["region"], where["id_var"], where["address"], where["instance_id"]
    what = f"{provider.label} {provider.instance_word}"
    if instance_id and not matches:
        raise CloudSgError(
            f"No {what} {instance_id} in region {region}: fix {id_var} or cloud_region for this host. "
            "Nothing was changed."
        )
    if not matches:
        raise CloudSgError(
            f"No {what} in region {region} has the private or public IPv4 address {address}: set {id_var} "
            "for this host, or check cloud_region and ansible_host / cloud_security_group_instance_address. "
            "Nothing was changed."
        )
    if len(matches) > 1:
        found = ", ".join(f"{m['id']} in {m['network'] or '?'}" for m in matches)
        raise CloudSgError(
            f"{len(matches)} {what}s in region {region} match the address {address} ({found}): "
            f"set {id_var} for this host to the right one. Nothing was changed."
        )
    return matches[0]


def lookup(provider: CloudSgProvider, where: Mapping[str, str]) -> dict[str, Any]:
    """The neutral record of the host's instance, with the rules of its groups. Read-only.

    ``where``: instance_id (may be empty), address, region, id_var (for messages).
    """
    matches = provider.find_instances(where["instance_id"], where["address"])
    unique = list({m["id"]: m for m in matches}.values())
    instance = _one_instance(provider, unique, where)
    groups = []
    for group in instance["groups"]:
        name, rules = provider.group_rules(group["id"])
        groups.append({"id": group["id"], "name": name or group.get("name", ""), "rules": neutral_rules(rules)})
    return {**instance, "groups": groups}


def _managed_group(provider: CloudSgProvider, spec: Mapping[str, Any], network: str) -> dict[str, Any] | None:
    """The existing group named like ours, refusing one without our marker tag."""
    groups = provider.find_groups(spec["name"], network)
    key, value = spec["marker"]
    mine = [g for g in groups if (g.get("tags") or {}).get(key) == value]
    if len(mine) > 1:
        raise CloudSgError(
            f"{len(mine)} security groups named '{spec['name']}' with the tag {key}={value} exist for {network} "
            f"({', '.join(g['id'] for g in mine)}): delete the extra ones or choose another "
            "cloud_security_group_name. Nothing was changed."
        )
    if not mine and groups:
        raise CloudSgError(
            f"Security group '{spec['name']}' ({groups[0]['id']}) already exists for {network} without the tag "
            f"{key}={value}, so it is not this role's and its rules will not be replaced: choose another "
            "cloud_security_group_name, or add that tag to the group if the role may manage it. Nothing was changed."
        )
    return mine[0] if mine else None


def apply(provider: CloudSgProvider, spec: Mapping[str, Any], check_mode: bool) -> dict[str, Any]:
    """Ensure the managed group, its exact rules of ours, and its attachment.

    ``spec``: where (for ``lookup``), name, description, tags, marker (key, value), ports,
    cidrs, cidrs_ipv6, prefix. Returns {changed, group_id, created, added, removed,
    attached, instance, diff}. In check mode nothing is written.
    """
    instance = _one_instance(
        provider, list({m["id"]: m for m in provider.find_instances(**_find_args(spec))}.values()), spec["where"]
    )
    group = _managed_group(provider, spec, instance["network"])
    current: list[dict[str, Any]] = provider.group_rules(group["id"])[1] if group else []
    desired = desired_rules(spec["ports"], spec["cidrs"], spec["cidrs_ipv6"], spec["prefix"])
    to_add, to_remove = plan_rules(current, desired, spec["prefix"])
    group_id = group["id"] if group else None
    if not check_mode:
        if group_id is None:
            group_id = provider.create_group(spec["name"], spec["description"], instance["network"], spec["tags"])
        if to_remove:
            provider.remove_rules(group_id, to_remove)
        if to_add:
            provider.add_rules(group_id, to_add)
    attached = group_id is not None and group_id in {g["id"] for g in instance["groups"]}
    attach = not attached
    if attach and group_id is not None and not check_mode:
        provider.attach(instance, group_id)
    wanted = {rule_key(r) for r in desired}
    after = [r for r in current if not _stale(r, wanted, spec["prefix"])] + to_add
    return {
        "changed": bool(group is None or to_add or to_remove or attach),
        "group_id": group_id,
        "created": group is None,
        "added": [describe_rule(r) for r in to_add],
        "removed": [describe_rule(r) for r in to_remove],
        "attached": attach,
        "instance": instance,
        "diff": {
            "before_header": f"{spec['name']} ingress rules",
            "after_header": f"{spec['name']} ingress rules",
            "before": _rule_lines(current) if group else "",
            "after": _rule_lines(after),
        },
    }


def _find_args(spec: Mapping[str, Any]) -> dict[str, str]:
    where = spec["where"]
    return {"instance_id": where["instance_id"], "address": where["address"]}


def failure_message(provider: CloudSgProvider, message: str) -> str:
    """``message`` plus what was already changed when a write call had succeeded."""
    if not provider.writes:
        return message if "Nothing was changed" in message else f"{message} Nothing was changed."
    return f"{message} Changes already made before the error: {'; '.join(provider.writes)}."
