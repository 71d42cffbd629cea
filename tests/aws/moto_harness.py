"""Helpers for the cloud_security_group tests (moto world, playbook runner).

Every AWS call of these tests (boto3 here, amazon.aws in the playbooks) goes to a private
moto_server on 127.0.0.1. As a safety net the subprocess environment also points
AWS_ENDPOINT_URL at a closed loopback port, so anything that forgot the endpoint fails
instead of reaching AWS.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible_collections.cosyvoice.deploy.plugins.filter.cosyvoice_endpoint import cosyvoice_endpoint

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
REGION = "eu-west-1"
#: Nothing listens here: a client that ignores cloud_endpoint_url fails fast, locally.
DEAD_ENDPOINT = "http://127.0.0.1:9"
DIRECT_PORTS = [{"port": 7860, "proto": "tcp", "purpose": "app"}]

_RECAP = re.compile(
    r"^(?P<host>\S+)\s+:\s+ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+"
    r"unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)\s+skipped=(?P<skipped>\d+)",
    re.MULTILINE,
)


def tool(name: str) -> str:
    """A console script of the venv running the tests (else from PATH)."""
    candidate = BIN / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        pytest.skip(f"{name} not installed")
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env() -> dict[str, str]:
    """The environment minus anything that could send AWS calls elsewhere."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(("AWS_", "BOTO"))}
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_ENDPOINT_URL=DEAD_ENDPOINT,
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    return env


@dataclass
class World:
    """A VPC with one instance whose primary interface carries a pre-existing group."""

    ec2: Any
    vpc_id: str
    subnet_id: str
    existing_sg: str
    instance_id: str
    eni_id: str
    private_ip: str
    public_ip: str

    def eni_groups(self) -> set[str]:
        eni = self.ec2.describe_network_interfaces(NetworkInterfaceIds=[self.eni_id])["NetworkInterfaces"][0]
        return {g["GroupId"] for g in eni["Groups"]}

    def group(self, name: str = "cosyvoice-tts") -> dict[str, Any] | None:
        groups = self.ec2.describe_security_groups(
            Filters=[{"Name": "group-name", "Values": [name]}, {"Name": "vpc-id", "Values": [self.vpc_id]}]
        )["SecurityGroups"]
        assert len(groups) <= 1
        return groups[0] if groups else None

    def group_count(self) -> int:
        return len(self.ec2.describe_security_groups()["SecurityGroups"])


def ingress(group: dict[str, Any]) -> set[tuple[str, int | None, int | None, str]]:
    """A group's ingress rules as (proto, from, to, cidr) tuples."""
    rules: set[tuple[str, int | None, int | None, str]] = set()
    for perm in group["IpPermissions"]:
        key = (perm["IpProtocol"], perm.get("FromPort"), perm.get("ToPort"))
        for rng in perm.get("IpRanges", []):
            rules.add((*key, rng["CidrIp"]))
        for rng in perm.get("Ipv6Ranges", []):
            rules.add((*key, rng["CidrIpv6"]))
    return rules


def make_world(ec2: Any, cidr: str = "10.10.0.0/16", private_ip: str = "10.10.1.50") -> World:
    vpc_id = ec2.create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"]
    subnet_cidr = cidr.replace("0.0/16", "1.0/24")
    subnet_id = ec2.create_subnet(VpcId=vpc_id, CidrBlock=subnet_cidr)["Subnet"]["SubnetId"]
    existing = ec2.create_security_group(GroupName="existing", Description="pre-existing", VpcId=vpc_id)["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=existing,
        IpPermissions=[{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}],
    )
    inst = ec2.run_instances(
        ImageId="ami-12345678",
        MinCount=1,
        MaxCount=1,
        InstanceType="g5.xlarge",
        NetworkInterfaces=[
            {
                "DeviceIndex": 0,
                "SubnetId": subnet_id,
                "Groups": [existing],
                "AssociatePublicIpAddress": True,
                "PrivateIpAddress": private_ip,
            }
        ],
        TagSpecifications=[
            {
                "ResourceType": "instance",
                "Tags": [{"Key": "Role", "Value": "cosyvoice-gpu"}, {"Key": "Name", "Value": "gpu1"}],
            }
        ],
    )["Instances"][0]
    return World(
        ec2=ec2,
        vpc_id=vpc_id,
        subnet_id=subnet_id,
        existing_sg=existing,
        instance_id=inst["InstanceId"],
        eni_id=inst["NetworkInterfaces"][0]["NetworkInterfaceId"],
        private_ip=inst["PrivateIpAddress"],
        public_ip=inst["PublicIpAddress"],
    )


@dataclass
class Result:
    rc: int
    output: str
    recap: dict[str, dict[str, int]] = field(default_factory=dict)

    def host(self, name: str = "gpu1") -> dict[str, int]:
        assert name in self.recap, self.output
        return self.recap[name]


class Runner:
    """Runs the project's playbooks against a one-host inventory pointing at moto."""

    def __init__(self, tmp_path: Path, endpoint: str) -> None:
        self.tmp_path = tmp_path
        self.endpoint = endpoint
        self.env = clean_env()
        self.env.update(ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")

    def inventory(self, **hostvars: Any) -> Path:
        base: dict[str, Any] = {
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
            "cloud_provider": "aws",
            "cloud_region": REGION,
            "cloud_endpoint_url": self.endpoint,
        }
        for key, value in hostvars.items():
            if value is None:
                base.pop(key, None)
            else:
                base[key] = value
        path = self.tmp_path / "inventory.yml"
        # An explicit localhost whose own interpreter lacks boto3 (a common inventory entry):
        # the role must still run the AWS modules with the controller's Python.
        localhost = {"ansible_connection": "local", "ansible_python_interpreter": "/nonexistent/python3"}
        inventory = {"all": {"hosts": {"localhost": localhost}, "children": {"gpu_servers": {"hosts": {"gpu1": base}}}}}
        path.write_text(yaml.safe_dump(inventory))
        return path

    def run(
        self,
        playbook: str | Path,
        ports: list[dict[str, Any]] | None = None,
        extra: dict[str, Any] | None = None,
        args: tuple[str, ...] = (),
        **hostvars: Any,
    ) -> Result:
        # A whole endpoint as the cosyvoice role publishes it (the wiring derives the role's ports from it).
        endpoint = cosyvoice_endpoint("direct", server_port=7860, public_address="203.0.113.7", auth=True)
        endpoint["public_ports"] = DIRECT_PORTS if ports is None else ports
        extra_vars: dict[str, Any] = {"cosyvoice_endpoint": endpoint}
        extra_vars.update(extra or {})
        cmd = [
            tool("ansible-playbook"),
            "-i",
            str(self.inventory(**hostvars)),
            str(REPO / playbook),
            "-e",
            json.dumps(extra_vars),
            *args,
        ]
        proc = subprocess.run(  # noqa: S603 - fixed argv
            cmd, cwd=REPO, env=self.env, capture_output=True, text=True, timeout=240, check=False
        )
        output = proc.stdout + proc.stderr
        recap = {
            m["host"]: {k: int(m[k]) for k in ("ok", "changed", "unreachable", "failed", "skipped")}
            for m in _RECAP.finditer(proc.stdout)
        }
        return Result(rc=proc.returncode, output=output, recap=recap)

    def apply(self, ports: list[dict[str, Any]] | None = None, **kwargs: Any) -> Result:
        return self.run("playbooks/security_group.yml", ports=ports, **kwargs)

    def check(self, ports: list[dict[str, Any]] | None = None, **kwargs: Any) -> tuple[Result, dict[str, Any]]:
        """Run the role's check.yml (the verify role's entry point); return its fact."""
        out = self.tmp_path / "check.json"
        out.unlink(missing_ok=True)
        extra = {"check_result_file": str(out)}
        extra.update(kwargs.pop("extra", None) or {})
        result = self.run("tests/aws/check_playbook.yml", ports=ports, extra=extra, **kwargs)
        assert result.rc == 0, result.output
        return result, json.loads(out.read_text())
