"""The cloud_security_group role with cloud_provider aliyun / tencent, against local contract servers.

Every test runs for both providers (the ``cloud`` fixture). The real playbook
(playbooks/security_group.yml) and the verify role's entry point (tasks_from: check) run
with ansible-playbook; the SDK modules talk to the fake on 127.0.0.1, which checks each
request's signature. "No write call" is asserted on the fake's request log.
"""

from __future__ import annotations

from cn_harness import Cloud, hostvars
from fake_base import Rule
from moto_harness import Runner

PROXY_PORTS = [
    {"port": 80, "proto": "tcp", "purpose": "http"},
    {"port": 443, "proto": "tcp", "purpose": "https"},
]
APP_RULES = {("tcp", 7860, 7860, "0.0.0.0/0", "cosyvoice app"), ("tcp", 7860, 7860, "::/0", "cosyvoice app")}


def _assert_untouched(cloud: Cloud) -> None:
    """No write call, no group created, the instance and the other groups as they were."""
    assert cloud.fake.writes() == []
    assert cloud.managed() is None
    assert cloud.instance.groups == [cloud.existing.id]
    assert cloud.fake.world.rules(cloud.existing.id) == {("tcp", 22, 22, "0.0.0.0/0", "ssh")}


def test_lifecycle_check_mode_create_idempotence_drift_and_port_change(runner: Runner, cloud: Cloud) -> None:
    world = cloud.fake.world
    # --check on a fresh instance: reports the change, makes no write call.
    result = runner.apply(args=("--check", "--diff"), **hostvars(cloud))
    assert result.rc == 0, result.output
    assert result.host()["changed"] == 1, result.output
    assert "+tcp 7860 from 0.0.0.0/0 (cosyvoice app)" in result.output
    _assert_untouched(cloud)

    # Apply: the group exists with exactly the public ports, tagged, attached next to the existing one.
    result = runner.apply(**hostvars(cloud))
    assert result.rc == 0, result.output
    assert result.host()["changed"] == 1, result.output
    group = cloud.managed()
    assert group is not None
    assert world.rules(group.id) == APP_RULES
    assert group.tags == {"managed-by": "ansible/cloud_security_group", "Name": "cosyvoice-tts", "Project": "cosyvoice"}
    assert group.vpc == ("vpc-10a" if cloud.provider == "aliyun" else "")
    assert cloud.instance.groups == [cloud.existing.id, group.id]
    assert world.rules(cloud.existing.id) == {("tcp", 22, 22, "0.0.0.0/0", "ssh")}
    assert world.rules(cloud.unrelated.id) == {("tcp", 8080, 8080, "10.0.0.0/8", "cosyvoice lookalike")}

    # Rerun, the instance named by its id this time: 0 changed and not one write call.
    writes = len(cloud.fake.writes())
    result = runner.apply(**hostvars(cloud, **{cloud.id_var: cloud.instance.id}))
    assert result.rc == 0, result.output
    assert result.host()["changed"] == 0, result.output
    assert len(cloud.fake.writes()) == writes

    # The verify role's check (same lookup, here by the public address) is satisfied.
    _, check = runner.check(**hostvars(cloud, ansible_host=cloud.instance.public_ip))
    assert sorted(check.pop("groups"), key=lambda g: g["name"]) == [
        {"id": group.id, "name": "cosyvoice-tts"},
        {"id": cloud.existing.id, "name": "existing"},
    ]
    assert check == {
        "provider": cloud.provider,
        "instance_id": cloud.instance.id,
        "managed_group_attached": True,
        "missing": [],
        "ok": True,
        "skipped": False,
    }

    # A rule revoked by hand, and someone else's rule added to our group: check names the
    # missing one (also under --check, as verify may run), apply restores it and keeps theirs.
    group.rules = [r for r in group.rules if r.cidr != "0.0.0.0/0"]
    world.add_rule(group, Rule("tcp", 9000, 9000, "198.51.100.0/24", "ops debugging"))
    _, check = runner.check(args=("--check",), **hostvars(cloud))
    assert check["ok"] is False
    assert check["missing"] == [{"port": 7860, "proto": "tcp", "cidr": "0.0.0.0/0"}]
    result = runner.apply(**hostvars(cloud))
    assert result.rc == 0, result.output
    assert result.host()["changed"] == 1, result.output
    assert world.rules(group.id) == APP_RULES | {("tcp", 9000, 9000, "198.51.100.0/24", "ops debugging")}

    # Ports changed (proxy mode, one office network, no IPv6): our old rules go, theirs stays.
    result = runner.apply(
        ports=PROXY_PORTS,
        **hostvars(cloud, cloud_security_group_cidrs=["198.51.100.0/24"], cloud_security_group_cidrs_ipv6=[]),
    )
    assert result.rc == 0, result.output
    assert world.rules(group.id) == {
        ("tcp", 80, 80, "198.51.100.0/24", "cosyvoice http"),
        ("tcp", 443, 443, "198.51.100.0/24", "cosyvoice https"),
        ("tcp", 9000, 9000, "198.51.100.0/24", "ops debugging"),
    }
    assert cloud.instance.groups == [cloud.existing.id, group.id]
    assert world.rules(cloud.unrelated.id) == {("tcp", 8080, 8080, "10.0.0.0/8", "cosyvoice lookalike")}
    assert len(world.named("cosyvoice-tts")) == 1


def test_rejected_credentials_fail_before_any_change(runner: Runner, cloud: Cloud) -> None:
    # A wrong secret given through the role variable (it wins over the environment).
    result = runner.apply(**hostvars(cloud, cloud_security_group_access_key_secret="wrong-secret"))
    assert result.rc != 0
    assert result.host()["failed"] == 1
    code = "SignatureDoesNotMatch" if cloud.provider == "aliyun" else "AuthFailure.SignatureFailure"
    assert "rejected the" in result.output and f"({code}): fix" in result.output, result.output
    assert cloud.env_names[0] in result.output and "Nothing was changed." in result.output
    assert "wrong-secret" not in result.output and cloud.secret not in result.output
    _assert_untouched(cloud)


def test_missing_credentials_fail_in_validation(runner: Runner, cloud: Cloud) -> None:
    for name in cloud.env_names:
        runner.env.pop(name)
    result = runner.apply(**hostvars(cloud))
    assert result.rc != 0
    assert "needs API credentials" in result.output, result.output
    assert f"{cloud.env_names[0]} and {cloud.env_names[1]}" in result.output
    assert cloud.fake.actions() == []  # failed before any API call
    _assert_untouched(cloud)


def test_unknown_address_and_foreign_group_fail_before_any_change(runner: Runner, cloud: Cloud) -> None:
    label = "Alibaba Cloud ECS instance" if cloud.provider == "aliyun" else "Tencent Cloud CVM instance"
    result = runner.apply(**hostvars(cloud, ansible_host="10.10.1.99"))
    assert result.rc != 0
    assert f"No {label} in region {cloud.region} has the private or public IPv4 address 10.10.1.99" in result.output

    # A group of the same name without the marker tag is someone else's.
    result = runner.apply(**hostvars(cloud, cloud_security_group_name="other-team"))
    assert result.rc != 0
    assert "already exists" in result.output and "not this role's" in result.output, result.output
    _assert_untouched(cloud)
    assert cloud.fake.world.rules(cloud.unrelated.id) == {("tcp", 8080, 8080, "10.0.0.0/8", "cosyvoice lookalike")}
