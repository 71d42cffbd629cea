"""playbooks/security_group.yml and the cloud_security_group role against moto (AWS).

Each test gets a freshly reset moto_server (127.0.0.1 only) with a VPC, a subnet, a
pre-existing security group and an instance whose primary interface carries that group.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml
from moto_harness import REGION, REPO, Runner, World, clean_env, ingress, make_world, tool

PROXY_PORTS = [
    {"port": 80, "proto": "tcp", "purpose": "http"},
    {"port": 443, "proto": "tcp", "purpose": "https"},
]


def _plain(value: Any) -> Any:
    """Unwrap ansible-inventory's {'__ansible_unsafe': ...} markers."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _assert_untouched(world: World, groups_before: int) -> None:
    """Nothing was created or attached."""
    assert world.group() is None
    assert world.group_count() == groups_before
    assert world.eni_groups() == {world.existing_sg}
    assert ingress(world.ec2.describe_security_groups(GroupIds=[world.existing_sg])["SecurityGroups"][0]) == {
        ("tcp", 22, 22, "0.0.0.0/0")
    }


def test_lifecycle_check_mode_apply_idempotence_drift_and_port_change(runner: Runner, world: World) -> None:
    """One instance through its life; one test so the expensive apply runs are shared."""
    before = world.group_count()

    # --check on a fresh instance reports the change and makes none.
    result = runner.apply(ansible_host=world.private_ip, args=("--check", "--diff"))
    assert result.rc == 0, result.output
    assert result.host()["changed"] == 1, result.output  # the group it would create
    _assert_untouched(world, before)

    # Apply: group with exactly the public ports, attached next to the existing group.
    result = runner.apply(ansible_host=world.private_ip)
    assert result.rc == 0, result.output
    assert result.host()["changed"] == 2, result.output  # group created, interface updated
    group = world.group()
    assert group is not None
    assert group["VpcId"] == world.vpc_id
    assert ingress(group) == {("tcp", 7860, 7860, "0.0.0.0/0"), ("tcp", 7860, 7860, "::/0")}
    tags = {t["Key"]: t["Value"] for t in group.get("Tags", [])}
    assert tags["Name"] == "cosyvoice-tts"
    assert tags["managed-by"] == "ansible/cloud_security_group"
    assert world.eni_groups() == {world.existing_sg, group["GroupId"]}
    existing = world.ec2.describe_security_groups(GroupIds=[world.existing_sg])["SecurityGroups"][0]
    assert ingress(existing) == {("tcp", 22, 22, "0.0.0.0/0")}

    # Rerun: nothing to do.
    result = runner.apply(ansible_host=world.private_ip)
    assert result.rc == 0, result.output
    assert result.host()["changed"] == 0, result.output

    # The verify role's check (same lookup, here by the public address) reports ok.
    _, check = runner.check(ansible_host=world.public_ip)
    groups = check.pop("groups")
    assert sorted(groups, key=lambda g: g["name"]) == [
        {"id": group["GroupId"], "name": "cosyvoice-tts"},
        {"id": world.existing_sg, "name": "existing"},
    ]
    assert check == {
        "provider": "aws",
        "instance_id": world.instance_id,
        "managed_group_attached": True,
        "missing": [],
        "ok": True,
        "skipped": False,
    }

    # A rule revoked by hand: --check reports it and does not restore it ...
    world.ec2.revoke_security_group_ingress(
        GroupId=group["GroupId"],
        IpPermissions=[{"IpProtocol": "tcp", "FromPort": 7860, "ToPort": 7860, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}],
    )
    result = runner.apply(ansible_host=world.private_ip, args=("--check", "--diff"))
    assert result.rc == 0, result.output
    assert result.host()["changed"] == 1, result.output
    assert ingress(world.group() or {}) == {("tcp", 7860, 7860, "::/0")}
    # ... the check entry point (also under --check, as verify may run) names it ...
    _, check = runner.check(ansible_host=world.private_ip, args=("--check",))
    assert check["ok"] is False
    assert check["missing"] == [{"port": 7860, "proto": "tcp", "cidr": "0.0.0.0/0"}]
    # ... and a real run restores it.
    result = runner.apply(ansible_host=world.private_ip)
    assert result.rc == 0, result.output
    assert result.host()["changed"] == 1, result.output
    assert ingress(world.group() or {}) == {("tcp", 7860, 7860, "0.0.0.0/0"), ("tcp", 7860, 7860, "::/0")}

    # Ports changed (proxy mode, one office network, no IPv6): the old rules are gone.
    result = runner.apply(
        ports=PROXY_PORTS,
        ansible_host=world.private_ip,
        cloud_security_group_cidrs=["198.51.100.0/24"],
        cloud_security_group_cidrs_ipv6=[],
    )
    assert result.rc == 0, result.output
    assert ingress(world.group() or {}) == {("tcp", 80, 80, "198.51.100.0/24"), ("tcp", 443, 443, "198.51.100.0/24")}
    assert world.eni_groups() == {world.existing_sg, group["GroupId"]}
    assert world.group_count() == before + 1


def test_unknown_instance_fails_before_any_change(runner: Runner, world: World) -> None:
    before = world.group_count()
    result = runner.apply(ansible_host="10.10.1.99")
    assert result.rc != 0
    assert result.host()["failed"] == 1
    assert "No EC2 instance in region eu-west-1 has the private or public" in result.output
    assert "10.10.1.99" in result.output

    result = runner.apply(ansible_host=world.private_ip, ec2_instance_id="i-0123456789abcdef0")
    assert result.rc != 0
    assert "No EC2 instance i-0123456789abcdef0 in region eu-west-1" in result.output
    _assert_untouched(world, before)


def test_ambiguous_address_fails_and_instance_id_resolves_it(runner: Runner, world: World) -> None:
    other = make_world(world.ec2)  # another VPC reusing the same private address
    before = world.group_count()
    result = runner.apply(ansible_host=world.private_ip)
    assert result.rc != 0
    assert "2 EC2 instances in region eu-west-1 match the address 10.10.1.50" in result.output
    assert world.instance_id in result.output and other.instance_id in result.output
    assert "set ec2_instance_id" in result.output
    _assert_untouched(world, before)
    _assert_untouched(other, before)

    result = runner.apply(ansible_host=world.private_ip, ec2_instance_id=other.instance_id)
    assert result.rc == 0, result.output
    assert other.group() is not None and world.group() is None
    assert other.eni_groups() == {other.existing_sg, (other.group() or {})["GroupId"]}


def test_missing_region_fails_before_any_call(runner: Runner, world: World) -> None:
    before = world.group_count()
    result = runner.apply(ansible_host=world.private_ip, cloud_region=None)
    assert result.rc != 0
    assert "cloud_region is '' for gpu1" in result.output
    # Failed in validation: no AWS module ran at all.
    assert "amazon.aws" not in result.output and "AWS |" not in result.output
    _assert_untouched(world, before)


def test_foreign_group_with_the_same_name_is_never_modified(runner: Runner, world: World) -> None:
    before = world.group_count()
    result = runner.apply(ansible_host=world.private_ip, cloud_security_group_name="existing")
    assert result.rc != 0
    assert "already exists in" in result.output and "not this role's" in result.output
    _assert_untouched(world, before)


def test_provider_none_does_nothing(runner: Runner, world: World) -> None:
    # The endpoint is the dead one: any AWS call would fail the run.
    before = world.group_count()
    result = runner.apply(ansible_host=world.private_ip, cloud_provider="none", cloud_endpoint_url=None)
    assert result.rc == 0, result.output
    assert result.host()["changed"] == 0
    # Only the wiring ran (the play computes its inputs); every task of the role was skipped.
    role_tasks = [b for b in result.output.split("TASK [")[1:] if b.startswith("cosyvoice.deploy.cloud_security_group :")]
    assert role_tasks and all("skipping: [gpu1]" in b and "ok: [gpu1]" not in b for b in role_tasks), result.output
    _assert_untouched(world, before)

    _, check = runner.check(ansible_host=world.private_ip, cloud_provider="none", cloud_endpoint_url=None)
    assert check == {"provider": "none", "ok": True, "skipped": True}


def test_example_dynamic_inventory_groups_gpu_instances(tmp_path: Path, moto_endpoint: str, world: World) -> None:
    # An instance without the tag must not show up.
    world.ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1, SubnetId=world.subnet_id)
    config: dict[str, Any] = yaml.safe_load((REPO / "inventory/aws_ec2.yml").read_text())
    config.update(regions=[REGION], endpoint_url=moto_endpoint)
    source = tmp_path / "test.aws_ec2.yml"
    source.write_text(yaml.safe_dump(config))
    env = clean_env()
    env["ANSIBLE_CONFIG"] = str(REPO / "ansible.cfg")
    proc = subprocess.run(  # noqa: S603 - fixed argv
        [tool("ansible-inventory"), "-i", str(source), "--list"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    inv = _plain(yaml.safe_load(proc.stdout))
    assert inv["gpu_servers"]["hosts"] == ["gpu1"]
    hostvars = inv["_meta"]["hostvars"]["gpu1"]
    assert hostvars["ec2_instance_id"] == world.instance_id
    assert hostvars["cloud_provider"] == "aws"
    assert hostvars["cloud_region"] == REGION
    assert hostvars["ansible_host"] == world.public_ip
