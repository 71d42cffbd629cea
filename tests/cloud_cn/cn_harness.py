"""The worlds the Alibaba Cloud / Tencent Cloud provider tests run against.

Each test gets a fresh contract server (fake_aliyun / fake_tencent) on a free 127.0.0.1
port, with a world like tests/aws builds: a VPC, a pre-existing group with an SSH rule, an
unrelated group nobody attaches, and an instance carrying the pre-existing group. The
playbook runner is tests/aws/moto_harness.py's (one runner for every provider), pointed at
the fake through cloud_endpoint_url; the SDK credential variables are set for the
subprocess only, and the real ones from the caller's environment are dropped.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


# The playbook runner is shared with the AWS tests: tests/aws/moto_harness.py.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "aws"))

from fake_aliyun import FakeAliyun  # noqa: E402
from fake_base import FakeCloud, Group, Instance, Rule  # noqa: E402
from fake_tencent import FakeTencent  # noqa: E402

#: Every environment variable either SDK reads credentials or endpoints from.
SDK_ENV_PREFIXES = ("ALIBABA_CLOUD_", "ALICLOUD_", "TENCENTCLOUD_")


@dataclass
class Cloud:
    """One provider's fake with its world and the inputs the role needs for it."""

    provider: str  # cloud_provider
    fake: FakeCloud
    region: str
    key_id: str
    secret: str
    env_names: tuple[str, str]
    id_var: str
    instance: Instance = field(init=False)
    existing: Group = field(init=False)
    unrelated: Group = field(init=False)

    def env(self, key_id: str | None = None, secret: str | None = None) -> dict[str, str]:
        return {self.env_names[0]: key_id or self.key_id, self.env_names[1]: secret or self.secret}

    def managed(self, name: str = "cosyvoice-tts") -> Group | None:
        groups = self.fake.world.named(name)
        assert len(groups) <= 1
        return groups[0] if groups else None


def _populate(cloud: Cloud, vpc: str) -> Cloud:
    world = cloud.fake.world
    group_vpc = vpc if cloud.provider == "aliyun" else ""  # Tencent groups belong to the region
    cloud.existing = world.add_group("existing", group_vpc, {}, [Rule("tcp", 22, 22, "0.0.0.0/0", "ssh")])
    cloud.unrelated = world.add_group("other-team", group_vpc, {"owner": "other"}, [Rule("tcp", 8080, 8080, "10.0.0.0/8", "cosyvoice lookalike")])
    cloud.instance = cloud.fake.add_instance(vpc, "10.10.1.50", "203.0.113.50", [cloud.existing.id])  # type: ignore[attr-defined]
    return cloud


def make(provider: str) -> Cloud:
    if provider == "aliyun":
        fake: FakeCloud = FakeAliyun("cn-hangzhou")
        cloud = Cloud(
            "aliyun", fake, "cn-hangzhou", "LTAItestkey0001", "test-secret",
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_SECRET"), "aliyun_instance_id",
        )
    else:
        fake = FakeTencent("ap-guangzhou")
        cloud = Cloud(
            "tencent", fake, "ap-guangzhou", "AKIDtestsecretid0001", "test-secret-key",
            ("TENCENTCLOUD_SECRET_ID", "TENCENTCLOUD_SECRET_KEY"), "tencent_instance_id",
        )
    return _populate(cloud, "vpc-10a")


def hostvars(cloud: Cloud, **extra: Any) -> dict[str, Any]:
    """The host's variables for this provider (moto_harness defaults to AWS)."""
    base: dict[str, Any] = {
        "cloud_provider": cloud.provider,
        "cloud_region": cloud.region,
        "ansible_host": cloud.instance.private_ip,
    }
    base.update(extra)
    return base
