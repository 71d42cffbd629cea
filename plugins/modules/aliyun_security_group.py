#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cosyvoice-deploy maintainers
# Apache License 2.0
"""Module aliyun_security_group: the deployment's ECS security group (Alibaba Cloud SDK)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: aliyun_security_group
author: cosyvoice-deploy maintainers
short_description: Open the public ports in an Alibaba Cloud ECS security group and attach it
description:
  - With O(state=query), finds the ECS instance by O(instance_id), else by O(address) (primary private
    IPv4, public IPv4 or EIP) and returns the provider-neutral instance record with the ingress rules of
    every attached security group. Read-only.
  - With O(state=present), also ensures a security group named O(name) in the instance's VPC carrying the
    marker tag O(marker_tag); refuses a same-named group without it. The group's ingress rules whose
    description starts with O(rule_description_prefix) are made exactly O(ports) x (O(cidrs) + O(cidrs_ipv6));
    other rules are never touched. The group is then joined to the instance (C(JoinSecurityGroup)),
    keeping the groups it already has.
  - Uses the official SDK (C(alibabacloud_ecs20140526), V3 C(ACS3-HMAC-SHA256) signatures). API actions -
    C(DescribeInstances), C(DescribeSecurityGroupAttribute), C(DescribeSecurityGroups), and for changes
    C(CreateSecurityGroup), C(AuthorizeSecurityGroup), C(RevokeSecurityGroup), C(JoinSecurityGroup).
  - Tested against a local contract server only, not against a real account.
options:
  region:
    description: Region id of the instance, e.g. C(cn-hangzhou).
    type: str
    required: true
  access_key_id:
    description: AccessKey ID. Empty - the environment variable C(ALIBABA_CLOUD_ACCESS_KEY_ID).
    type: str
    default: ""
  access_key_secret:
    description: AccessKey secret. Empty - the environment variable C(ALIBABA_CLOUD_ACCESS_KEY_SECRET).
    type: str
    default: ""
  instance_id_var:
    description: Name of the inventory variable holding the instance id, for error messages.
    type: str
    default: aliyun_instance_id
requirements:
  - alibabacloud-ecs20140526
extends_documentation_fragment:
  - cosyvoice.deploy.cloud_security_group_sdk
"""

EXAMPLES = r"""
- name: Open 7860/tcp in the deployment's group
  cosyvoice.deploy.aliyun_security_group:
    region: cn-hangzhou
    address: 10.0.1.5
    ports: [{port: 7860, proto: tcp, purpose: app}]
    cidrs: [0.0.0.0/0]
  delegate_to: localhost
"""

RETURN = r"""
instance:
  description: The neutral instance record (id, network, interface, private_ip, public_ip, groups).
  returned: always
  type: dict
group_id:
  description: The managed group's id (null in check mode before it exists).
  returned: state=present
  type: str
added:
  description: Rules added (or that would be).
  returned: state=present
  type: list
  elements: str
removed:
  description: Rules of ours removed (or that would be).
  returned: state=present
  type: list
  elements: str
"""

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.cosyvoice.deploy.plugins.module_utils import cloud_sg_common as common
from ansible_collections.cosyvoice.deploy.plugins.module_utils import cloud_sg_module

try:
    from alibabacloud_ecs20140526 import models as ecs_models
    from alibabacloud_ecs20140526.client import Client as EcsClient
    from alibabacloud_tea_openapi.utils_models import Config

    HAS_SDK = True
except ImportError:
    HAS_SDK = False

#: Error codes that mean the AccessKey pair is wrong (Alibaba Cloud common error codes).
AUTH_CODES = frozenset(
    {
        "InvalidAccessKeyId.NotFound",
        "InvalidAccessKeyId.Inactive",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
    }
)
CREDENTIALS = (
    "set cloud_security_group_access_key_id and cloud_security_group_access_key_secret (from vault), "
    "or ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET in the controller's environment."
)
_BATCH = 100  # AuthorizeSecurityGroup / RevokeSecurityGroup take at most 100 rules per call


def _items(data: Mapping[str, Any], outer: str, inner: str) -> list[Any]:
    """``data[outer][inner]`` as a list (the RPC API wraps lists like that)."""
    value = (data.get(outer) or {}).get(inner) or []
    return value if isinstance(value, list) else [value]


def _instance(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Neutral record (groups without rules) of one DescribeInstances instance."""
    vpc = raw.get("VpcAttributes") or {}
    private = _items(vpc, "PrivateIpAddress", "IpAddress")
    public = _items(raw, "PublicIpAddress", "IpAddress")
    eip = (raw.get("EipAddress") or {}).get("IpAddress") or ""
    nics = [n for n in _items(raw, "NetworkInterfaces", "NetworkInterface") if n.get("Type", "Primary") == "Primary"]
    return {
        "id": raw["InstanceId"],
        "network": vpc.get("VpcId") or "",
        "interface": nics[0].get("NetworkInterfaceId", "") if nics else "",
        "private_ip": private[0] if private else None,
        "public_ip": public[0] if public else (eip or None),
        "groups": [{"id": g, "name": ""} for g in _items(raw, "SecurityGroupIds", "SecurityGroupId")],
    }


def _rule(perm: Mapping[str, Any]) -> dict[str, Any] | None:
    """A current rule from one DescribeSecurityGroupAttribute permission (None: not by CIDR)."""
    cidr = perm.get("SourceCidrIp") or perm.get("Ipv6SourceCidrIp")
    if not cidr:
        return None  # source group or prefix list: never ours, never counted
    proto = str(perm.get("IpProtocol", "ALL")).lower()
    low, _, high = str(perm.get("PortRange") or "-1/-1").partition("/")
    ports = (None, None) if proto == "all" or low == "-1" else (int(low), int(high or low))
    return {
        "proto": proto,
        "from_port": ports[0],
        "to_port": ports[1],
        "cidr": cidr,
        "description": perm.get("Description") or "",
        "allow": str(perm.get("Policy", "Accept")).lower() == "accept",
        "ref": perm.get("SecurityGroupRuleId"),
    }


class AliyunProvider(common.CloudSgProvider):
    label = "Alibaba Cloud ECS"

    def __init__(self, params: Mapping[str, Any]) -> None:
        super().__init__()
        self.region = params["region"]
        config = Config(
            access_key_id=params["access_key_id"],
            access_key_secret=params["access_key_secret"],
            region_id=self.region,
            connect_timeout=10000,
            read_timeout=30000,
        )
        override = cloud_sg_module.endpoint(params["endpoint_url"])
        if override:
            config.protocol, config.endpoint = override
        self.client = EcsClient(config)

    def _call(self, action: str, request: dict[str, Any], write: str | None = None) -> dict[str, Any]:
        """One API call, e.g. _call('DescribeInstances', {...}); the response body as a dict."""
        snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in action).lstrip("_")
        model = getattr(ecs_models, f"{action}Request")().from_map({"RegionId": self.region, **request})
        body = getattr(self.client, snake)(model).body.to_map()
        if write:
            self.writes.append(write)
        return body

    def find_instances(self, instance_id: str, address: str) -> list[dict[str, Any]]:
        if instance_id:
            queries = [{"InstanceIds": json.dumps([instance_id])}]
        else:
            queries = [
                {"InstanceNetworkType": "vpc", "PrivateIpAddresses": json.dumps([address])},
                {"PublicIpAddresses": json.dumps([address])},
                {"EipAddresses": json.dumps([address])},
            ]
        found: list[dict[str, Any]] = []
        for query in queries:
            body = self._call("DescribeInstances", {**query, "PageSize": 100})
            found += [_instance(i) for i in _items(body, "Instances", "Instance")]
        return found

    def group_rules(self, group_id: str) -> tuple[str, list[dict[str, Any]]]:
        body = self._call("DescribeSecurityGroupAttribute", {"SecurityGroupId": group_id, "Direction": "ingress"})
        rules = [_rule(p) for p in _items(body, "Permissions", "Permission") if p.get("Direction", "ingress") == "ingress"]
        return str(body.get("SecurityGroupName") or ""), [r for r in rules if r]

    def find_groups(self, name: str, network: str) -> list[dict[str, Any]]:
        body = self._call("DescribeSecurityGroups", {"VpcId": network, "SecurityGroupName": name, "PageSize": 50})
        return [
            {
                "id": g["SecurityGroupId"],
                "name": g.get("SecurityGroupName", ""),
                "tags": {t.get("TagKey"): t.get("TagValue") for t in _items(g, "Tags", "Tag")},
            }
            for g in _items(body, "SecurityGroups", "SecurityGroup")
            if g.get("SecurityGroupName") == name
        ]

    def create_group(self, name: str, description: str, network: str, tags: Mapping[str, str]) -> str:
        request = {
            "VpcId": network,
            "SecurityGroupName": name,
            "Description": description,
            "SecurityGroupType": "normal",
            "Tag": [{"Key": k, "Value": v} for k, v in tags.items()],
        }
        return str(self._call("CreateSecurityGroup", request, write=f"created group {name}")["SecurityGroupId"])

    def add_rules(self, group_id: str, rules: Sequence[Mapping[str, Any]]) -> None:
        for start in range(0, len(rules), _BATCH):
            batch = rules[start : start + _BATCH]
            perms = [
                {
                    "IpProtocol": r["proto"].upper(),
                    "PortRange": f"{r['from_port']}/{r['to_port']}",
                    ("Ipv6SourceCidrIp" if ":" in r["cidr"] else "SourceCidrIp"): r["cidr"],
                    "Description": r["description"],
                    "Policy": "accept",
                    "Priority": "1",
                }
                for r in batch
            ]
            self._call(
                "AuthorizeSecurityGroup",
                {"SecurityGroupId": group_id, "Permissions": perms},
                write=f"added {len(batch)} rule(s) to {group_id}",
            )

    def remove_rules(self, group_id: str, rules: Sequence[Mapping[str, Any]]) -> None:
        ids = [r["ref"] for r in rules]
        for start in range(0, len(ids), _BATCH):
            batch = ids[start : start + _BATCH]
            self._call(
                "RevokeSecurityGroup",
                {"SecurityGroupId": group_id, "SecurityGroupRuleId": batch},
                write=f"removed {len(batch)} rule(s) from {group_id}",
            )

    def attach(self, instance: Mapping[str, Any], group_id: str) -> None:
        self._call(
            "JoinSecurityGroup",
            {"SecurityGroupId": group_id, "InstanceId": instance["id"]},
            write=f"joined {group_id} to {instance['id']}",
        )


def explain_error(err: Exception) -> str | None:
    """A message for the SDK errors users can fix."""
    code = str(getattr(err, "code", "") or "")
    if code in AUTH_CODES:
        return f"Alibaba Cloud rejected the AccessKey ({code}): fix the credentials - {CREDENTIALS}"
    if code.startswith("Forbidden") or code == "NoPermission":
        return (
            f"Alibaba Cloud denied the call ({code}): grant the RAM user the ECS actions listed in the "
            "cloud_security_group role's README."
        )
    if code:
        return f"Alibaba Cloud ECS API error {code}: {getattr(err, 'message', err)}"
    return None


def main() -> None:
    module = AnsibleModule(
        argument_spec=cloud_sg_module.argument_spec("aliyun_instance_id"),
        supports_check_mode=True,
    )
    if not HAS_SDK:
        module.fail_json(msg=missing_required_lib("alibabacloud-ecs20140526"))
    cloud_sg_module.run(module, AliyunProvider, explain_error, ("ALIBABA_CLOUD_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_SECRET"), CREDENTIALS)


if __name__ == "__main__":
    main()
