"""Unit tests for filter_plugins/cloud_sg.py (the cloud_security_group role's logic).

The instance and group samples are amazon.aws.ec2_instance_info /
ec2_security_group_info answers captured from moto_server (trimmed to the keys used).
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import pytest
from ansible.errors import AnsibleFilterError




from ansible_collections.cosyvoice.deploy.plugins.filter import cloud_sg as cs  # noqa: E402

INSTANCE: dict[str, Any] = {
    "instance_id": "i-851a6795ddd2e365c",
    "private_ip_address": "10.10.1.50",
    "public_ip_address": "54.214.144.21",
    "vpc_id": "vpc-12aa32e078f231bb7",
    "network_interfaces": [
        {
            "association": {"ip_owner_id": "123456789012", "public_ip": "54.214.144.21"},
            "attachment": {
                "attachment_id": "eni-attach-ec5ec1089228234bd",
                "delete_on_termination": False,
                "device_index": 0,
                "network_card_index": 0,
                "status": "attached",
            },
            "description": "Primary network interface",
            "groups": [{"group_id": "sg-5b8cd902c76e91827", "group_name": "existing"}],
            "network_interface_id": "eni-24868d80f61972d99",
            "private_ip_address": "10.10.1.50",
            "subnet_id": "subnet-2d5ab45c52beffb19",
            "vpc_id": "vpc-12aa32e078f231bb7",
        }
    ],
    "state": {"code": 16, "name": "running"},
}

GROUPS: list[dict[str, Any]] = [
    {
        "description": "pre-existing",
        "group_id": "sg-5b8cd902c76e91827",
        "group_name": "existing",
        "ip_permissions": [
            {
                "from_port": 22,
                "ip_protocol": "tcp",
                "ip_ranges": [{"cidr_ip": "0.0.0.0/0"}],
                "ipv6_ranges": [],
                "prefix_list_ids": [],
                "to_port": 22,
                "user_id_group_pairs": [],
            },
            {
                "from_port": 7860,
                "ip_protocol": "tcp",
                "ip_ranges": [],
                "ipv6_ranges": [{"cidr_ipv6": "::/0", "description": "cosyvoice app"}],
                "prefix_list_ids": [],
                "to_port": 7860,
                "user_id_group_pairs": [],
            },
            {
                "from_port": 8000,
                "ip_protocol": "tcp",
                "ip_ranges": [],
                "ipv6_ranges": [],
                "prefix_list_ids": [],
                "to_port": 9000,
                "user_id_group_pairs": [{"group_id": "sg-0aaaaaaaaaaaaaaaa"}],
            },
        ],
        "ip_permissions_egress": [{"ip_protocol": "-1", "ip_ranges": [{"cidr_ip": "0.0.0.0/0"}]}],
        "vpc_id": "vpc-12aa32e078f231bb7",
    }
]

DIRECT = [{"port": 7860, "proto": "tcp", "purpose": "app"}]
PROXY = [{"port": 443, "proto": "tcp", "purpose": "https"}, {"port": 80, "proto": "tcp", "purpose": "http"}]


# --- validation helpers ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "version", "bad"),
    [
        (["0.0.0.0/0", "203.0.113.0/24", "10.0.0.5/32"], 4, []),
        (["10.0.0.1/8", "foo", "::/0"], 4, ["10.0.0.1/8", "foo", "::/0"]),
        (["10.0.0.0/8 "], 4, ["10.0.0.0/8 "]),
        (["::/0", "2001:db8::/32"], 6, []),
        (["2001:DB8::/32", "2001:db8:0::/32", "0.0.0.0/0"], 6, ["2001:DB8::/32", "2001:db8:0::/32", "0.0.0.0/0"]),
        ("0.0.0.0/0", 4, ["'0.0.0.0/0'"]),
    ],
)
def test_invalid_cidrs(values: Any, version: int, bad: list[str]) -> None:
    assert cs.cloud_sg_invalid_cidrs(values, version) == bad


def test_cidr_hints_name_the_fix() -> None:
    assert cs.cloud_sg_cidr_hints(["10.0.0.1/8", "0.0.0.0/0", "x"], 4) == (
        "'10.0.0.1/8' (did you mean 10.0.0.0/8?), 'x' (did you mean <not an IP network>?)"
    )
    assert cs.cloud_sg_cidr_hints(["2001:DB8::/32"], 6) == "'2001:DB8::/32' (did you mean 2001:db8::/32?)"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("10.0.0.5", True), ("2001:db8::1", True), ("gpu.example.com", False), ("10.0.0.0/8", False), ("", False)],
)
def test_is_ip(value: str, expected: bool) -> None:
    assert cs.cloud_sg_is_ip(value) is expected


def test_invalid_ports() -> None:
    assert cs.cloud_sg_invalid_ports(DIRECT + PROXY) == []
    assert cs.cloud_sg_invalid_ports([]) == []
    assert cs.cloud_sg_invalid_ports([{"port": 53, "proto": "udp"}, {"port": 22}]) == []
    problems = cs.cloud_sg_invalid_ports([{"port": 0}, {"port": "80"}, {"port": True}, {"port": 1, "proto": "sctp"}, 7])
    assert problems == [
        "item 0: port must be an integer 1-65535, got 0",
        "item 1: port must be an integer 1-65535, got '80'",
        "item 2: port must be an integer 1-65535, got True",
        "item 3: proto must be one of tcp, udp, got 'sctp'",
        "item 4 is not a mapping: 7",
    ]
    assert cs.cloud_sg_invalid_ports({"port": 1}) == ["not a list: {'port': 1}"]


# --- AWS rules --------------------------------------------------------------------------


def test_aws_rules_direct_mode() -> None:
    assert cs.cloud_sg_aws_rules(DIRECT, ["0.0.0.0/0"], ["::/0"], "cosyvoice ") == [
        {"proto": "tcp", "from_port": 7860, "to_port": 7860, "cidr_ip": ["0.0.0.0/0"], "rule_desc": "cosyvoice app"},
        {"proto": "tcp", "from_port": 7860, "to_port": 7860, "cidr_ipv6": ["::/0"], "rule_desc": "cosyvoice app"},
    ]


def test_aws_rules_are_sorted_deduplicated_and_skip_empty_families() -> None:
    rules = cs.cloud_sg_aws_rules(PROXY + [{"port": 80, "proto": "tcp", "purpose": "dup"}], ["198.51.100.0/24"], [])
    assert [(r["from_port"], r["cidr_ip"], r["rule_desc"]) for r in rules] == [
        (80, ["198.51.100.0/24"], "http"),
        (443, ["198.51.100.0/24"], "https"),
    ]
    assert all("cidr_ipv6" not in r for r in rules)


def test_aws_rules_local_mode_is_empty() -> None:
    assert cs.cloud_sg_aws_rules([], ["0.0.0.0/0"], ["::/0"]) == []


def test_aws_rule_description_uses_allowed_characters_only() -> None:
    rules = cs.cloud_sg_aws_rules([{"port": 1, "purpose": "app ü\"x'" + "y" * 300}], ["0.0.0.0/0"], [], "p ")
    desc = rules[0]["rule_desc"]
    assert desc.startswith("p app _")
    assert len(desc) == 255
    assert set(desc) <= cs._AWS_DESC_ALLOWED
    assert "rule_desc" not in cs.cloud_sg_aws_rules([{"port": 1}], ["0.0.0.0/0"], [])[0]


# --- AWS instance record ----------------------------------------------------------------


def test_aws_instance_without_rules() -> None:
    assert cs.cloud_sg_aws_instance(INSTANCE) == {
        "id": "i-851a6795ddd2e365c",
        "network": "vpc-12aa32e078f231bb7",
        "interface": "eni-24868d80f61972d99",
        "private_ip": "10.10.1.50",
        "public_ip": "54.214.144.21",
        "groups": [{"id": "sg-5b8cd902c76e91827", "name": "existing"}],
    }


def test_aws_instance_with_rules_skips_group_sources() -> None:
    record = cs.cloud_sg_aws_instance(INSTANCE, GROUPS)
    assert record["groups"][0]["rules"] == [
        {"proto": "tcp", "from_port": 22, "to_port": 22, "cidr": "0.0.0.0/0"},
        {"proto": "tcp", "from_port": 7860, "to_port": 7860, "cidr": "::/0"},
    ]
    # A group missing from the describe answer has no rules rather than breaking the lookup.
    assert cs.cloud_sg_aws_instance(INSTANCE, [])["groups"][0]["rules"] == []


def test_aws_instance_uses_the_primary_interface_only() -> None:
    instance = copy.deepcopy(INSTANCE)
    secondary = copy.deepcopy(instance["network_interfaces"][0])
    secondary.update(network_interface_id="eni-second", groups=[{"group_id": "sg-other", "group_name": "other"}])
    secondary["attachment"]["device_index"] = 1
    instance["network_interfaces"].insert(0, secondary)
    record = cs.cloud_sg_aws_instance(instance)
    assert record["interface"] == "eni-24868d80f61972d99"
    assert [g["id"] for g in record["groups"]] == ["sg-5b8cd902c76e91827"]


def test_aws_instance_without_primary_interface_fails_clearly() -> None:
    instance = copy.deepcopy(INSTANCE)
    instance["network_interfaces"] = []
    with pytest.raises(AnsibleFilterError, match="i-851a6795ddd2e365c has 0 network interfaces at device index 0"):
        cs.cloud_sg_aws_instance(instance)


@pytest.mark.parametrize(
    ("perm", "expected"),
    [
        ({"ip_protocol": "-1", "ip_ranges": [{"cidr_ip": "10.0.0.0/8"}]}, ("all", None, None)),
        (
            {"ip_protocol": "6", "from_port": 0, "to_port": 65535, "ip_ranges": [{"cidr_ip": "10.0.0.0/8"}]},
            ("tcp", 0, 65535),
        ),
        (
            {"ip_protocol": "17", "from_port": 53, "to_port": 53, "ip_ranges": [{"cidr_ip": "10.0.0.0/8"}]},
            ("udp", 53, 53),
        ),
        (
            {"ip_protocol": "icmp", "from_port": -1, "to_port": -1, "ip_ranges": [{"cidr_ip": "10.0.0.0/8"}]},
            ("icmp", None, None),
        ),
    ],
)
def test_aws_protocol_normalisation(perm: dict[str, Any], expected: tuple[str, Any, Any]) -> None:
    groups = [{"group_id": "sg-5b8cd902c76e91827", "ip_permissions": [perm]}]
    rules = cs.cloud_sg_aws_instance(INSTANCE, groups)["groups"][0]["rules"]
    assert [(r["proto"], r["from_port"], r["to_port"]) for r in rules] == [expected]


# --- the check --------------------------------------------------------------------------


def _groups(*rules: tuple[str, int | None, int | None, str]) -> list[dict[str, Any]]:
    return [
        {
            "id": "sg-1",
            "name": "g",
            "rules": [{"proto": p, "from_port": f, "to_port": t, "cidr": c} for p, f, t, c in rules],
        }
    ]


def test_missing_reports_each_port_and_cidr() -> None:
    record = cs.cloud_sg_aws_instance(INSTANCE, GROUPS)
    missing = cs.cloud_sg_missing(DIRECT, ["0.0.0.0/0", "::/0"], record["groups"])
    assert missing == [{"port": 7860, "proto": "tcp", "cidr": "0.0.0.0/0"}]
    assert cs.cloud_sg_describe_missing(missing) == "7860/tcp from 0.0.0.0/0"


def test_missing_nothing_when_covered_by_wider_rules() -> None:
    groups = _groups(("tcp", 7000, 8000, "0.0.0.0/0"), ("all", None, None, "::/0"))
    assert cs.cloud_sg_missing(DIRECT, ["203.0.113.0/24", "2001:db8::/32"], groups) == []


@pytest.mark.parametrize(
    "rule",
    [
        ("udp", 7860, 7860, "0.0.0.0/0"),  # wrong protocol
        ("tcp", 7861, 7870, "0.0.0.0/0"),  # port outside the range
        ("tcp", 7860, 7860, "203.0.113.0/25"),  # narrower than wanted
        ("tcp", 7860, 7860, "::/0"),  # other address family
        ("tcp", 7860, 7860, "not-a-cidr"),  # garbage never matches
    ],
)
def test_missing_when_rule_does_not_cover(rule: tuple[str, int, int, str]) -> None:
    assert cs.cloud_sg_missing(DIRECT, ["203.0.113.0/24"], _groups(rule)) == [
        {"port": 7860, "proto": "tcp", "cidr": "203.0.113.0/24"}
    ]


def test_missing_with_no_ports_is_empty() -> None:
    assert cs.cloud_sg_missing([], ["0.0.0.0/0"], []) == []


def test_group_refs_drop_rules() -> None:
    assert cs.cloud_sg_group_refs(_groups(("tcp", 1, 1, "0.0.0.0/0"))) == [{"id": "sg-1", "name": "g"}]


def test_filter_module_exports_everything() -> None:
    names = set(cs.FilterModule().filters())
    assert names == {n for n in dir(cs) if n.startswith("cloud_sg_")}
