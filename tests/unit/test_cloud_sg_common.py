"""Provider-neutral logic of the SDK security group modules (module_utils/cloud_sg_common)."""

from __future__ import annotations

from typing import Any

import pytest
from ansible_collections.cosyvoice.deploy.plugins.module_utils import cloud_sg_common as common

APP = [{"port": 7860, "proto": "tcp", "purpose": "app"}]
MARKER = ("managed-by", "ansible/cloud_security_group")


def _rule(port: int | None, cidr: str, description: str = "", allow: bool = True, proto: str = "tcp", ref: Any = None) -> dict[str, Any]:
    return {"proto": proto, "from_port": port, "to_port": port, "cidr": cidr, "description": description, "allow": allow, "ref": ref}


class MemoryProvider(common.CloudSgProvider):
    """Adapter over plain dicts; records every write like the SDK adapters do."""

    label = "Test Cloud"

    def __init__(self, instances: list[dict[str, Any]], groups: dict[str, dict[str, Any]]) -> None:
        super().__init__()
        self.instances, self.groups = instances, groups

    def find_instances(self, instance_id: str, address: str) -> list[dict[str, Any]]:
        if instance_id:
            return [dict(i) for i in self.instances if i["id"] == instance_id]
        return [dict(i) for i in self.instances if address in (i["private_ip"], i["public_ip"])]

    def group_rules(self, group_id: str) -> tuple[str, list[dict[str, Any]]]:
        group = self.groups[group_id]
        return group["name"], [dict(r, ref=n) for n, r in enumerate(group["rules"])]

    def find_groups(self, name: str, network: str) -> list[dict[str, Any]]:
        return [{"id": k, "name": g["name"], "tags": g["tags"]} for k, g in self.groups.items() if g["name"] == name]

    def create_group(self, name: str, description: str, network: str, tags: Any) -> str:
        self.writes.append("create")
        self.groups["sg-new"] = {"name": name, "tags": dict(tags), "rules": []}
        return "sg-new"

    def add_rules(self, group_id: str, rules: Any) -> None:
        self.writes.append("add")
        self.groups[group_id]["rules"] += [{k: v for k, v in r.items() if k != "ref"} for r in rules]

    def remove_rules(self, group_id: str, rules: Any) -> None:
        self.writes.append("remove")
        gone = {r["ref"] for r in rules}
        self.groups[group_id]["rules"] = [r for n, r in enumerate(self.groups[group_id]["rules"]) if n not in gone]

    def attach(self, instance: Any, group_id: str) -> None:
        self.writes.append("attach")
        next(i for i in self.instances if i["id"] == instance["id"])["groups"].append({"id": group_id, "name": ""})


def _world() -> MemoryProvider:
    instance = {
        "id": "i-1", "network": "vpc-1", "interface": "", "private_ip": "10.0.0.5", "public_ip": "203.0.113.5",
        "groups": [{"id": "sg-old", "name": ""}],
    }
    groups = {"sg-old": {"name": "existing", "tags": {}, "rules": [_rule(22, "0.0.0.0/0", "ssh"), _rule(7860, "10.0.0.0/8", "x", allow=False)]}}
    return MemoryProvider([instance], groups)


def _spec(**changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "where": {"instance_id": "", "address": "10.0.0.5", "region": "r-1", "id_var": "test_instance_id"},
        "name": "cosyvoice-tts", "description": "d", "tags": {MARKER[0]: MARKER[1]}, "marker": MARKER,
        "ports": APP, "cidrs": ["0.0.0.0/0"], "cidrs_ipv6": ["::/0"], "prefix": "cosyvoice ",
    }
    spec.update(changes)
    return spec


def test_desired_rules_are_ports_times_cidrs_described_with_the_prefix():
    rules = common.desired_rules([*APP, {"port": 53, "proto": "udp"}], ["10.0.0.0/8"], ["::/0"])
    assert [(r["proto"], r["from_port"], r["cidr"], r["description"]) for r in rules] == [
        ("tcp", 7860, "10.0.0.0/8", "cosyvoice app"),
        ("tcp", 7860, "::/0", "cosyvoice app"),
        ("udp", 53, "10.0.0.0/8", "cosyvoice 53/udp"),
        ("udp", 53, "::/0", "cosyvoice 53/udp"),
    ]


def test_plan_adds_missing_removes_only_our_stale_rules_and_never_duplicates():
    current = [
        _rule(7860, "0.0.0.0/0", "ops rule"),  # someone else's rule already allows it: not added again
        _rule(80, "0.0.0.0/0", "cosyvoice http"),  # ours, no longer wanted: removed
        _rule(443, "0.0.0.0/0", "ops https"),  # not ours: kept
        _rule(7860, "::/0", "cosyvoice app", allow=False),  # ours turned into a deny: replaced
    ]
    to_add, to_remove = common.plan_rules(current, common.desired_rules(APP, ["0.0.0.0/0"], ["::/0"]))
    assert [common.describe_rule(r) for r in to_add] == ["tcp 7860 from ::/0 (cosyvoice app)"]
    assert sorted(common.describe_rule(r) for r in to_remove) == [
        "tcp 7860 from ::/0 DENY (cosyvoice app)",
        "tcp 80 from 0.0.0.0/0 (cosyvoice http)",
    ]
    assert common.plan_rules([], []) == ([], [])


def test_neutral_rules_leave_out_deny_rules():
    assert common.neutral_rules([_rule(22, "0.0.0.0/0"), _rule(23, "0.0.0.0/0", allow=False)]) == [
        {"proto": "tcp", "from_port": 22, "to_port": 22, "cidr": "0.0.0.0/0"}
    ]


def test_lookup_returns_the_neutral_record_with_rules():
    record = common.lookup(_world(), _spec()["where"])
    assert record["id"] == "i-1" and record["network"] == "vpc-1"
    assert record["groups"] == [{"id": "sg-old", "name": "existing", "rules": [{"proto": "tcp", "from_port": 22, "to_port": 22, "cidr": "0.0.0.0/0"}]}]


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ({"address": "10.9.9.9"}, "No Test Cloud instance in region r-1 has the private or public IPv4 address 10.9.9.9: set test_instance_id"),
        ({"instance_id": "i-404"}, "No Test Cloud instance i-404 in region r-1: fix test_instance_id"),
    ],
)
def test_lookup_fails_clearly_when_nothing_matches(where: dict[str, str], message: str):
    with pytest.raises(common.CloudSgError, match="Nothing was changed") as err:
        common.lookup(_world(), {**_spec()["where"], **where})
    assert message in str(err.value)


def test_lookup_refuses_an_ambiguous_address():
    provider = _world()
    provider.instances.append({**provider.instances[0], "id": "i-2", "network": "vpc-2"})
    with pytest.raises(common.CloudSgError, match=r"2 Test Cloud instances .* \(i-1 in vpc-1, i-2 in vpc-2\): set test_instance_id"):
        common.lookup(provider, _spec()["where"])


def test_apply_in_check_mode_writes_nothing_and_reports_the_change():
    provider = _world()
    result = common.apply(provider, _spec(), check_mode=True)
    assert provider.writes == []
    assert result["changed"] and result["created"] and result["group_id"] is None
    assert result["diff"]["after"] == "tcp 7860 from 0.0.0.0/0 (cosyvoice app)\ntcp 7860 from ::/0 (cosyvoice app)\n"


def test_apply_creates_attaches_then_changes_nothing():
    provider = _world()
    first = common.apply(provider, _spec(), check_mode=False)
    assert provider.writes == ["create", "add", "attach"] and first["changed"]
    assert [g["id"] for g in provider.instances[0]["groups"]] == ["sg-old", "sg-new"]
    provider.writes.clear()
    again = common.apply(provider, _spec(), check_mode=False)
    assert provider.writes == [] and not again["changed"]
    assert again["diff"]["before"] == again["diff"]["after"]


def test_apply_refuses_groups_without_the_marker_and_duplicates_with_it():
    provider = _world()
    with pytest.raises(common.CloudSgError, match="without the tag managed-by=ansible/cloud_security_group"):
        common.apply(provider, _spec(name="existing"), check_mode=False)
    provider.groups["sg-a"] = provider.groups["sg-b"] = {"name": "twin", "tags": dict([MARKER]), "rules": []}
    with pytest.raises(common.CloudSgError, match="2 security groups named 'twin'"):
        common.apply(provider, _spec(name="twin"), check_mode=False)
    assert provider.writes == []


def test_failure_message_says_what_was_already_changed():
    provider = _world()
    assert common.failure_message(provider, "Boom.") == "Boom. Nothing was changed."
    provider.writes.append("created group x")
    assert common.failure_message(provider, "Boom.") == "Boom. Changes already made before the error: created group x."
