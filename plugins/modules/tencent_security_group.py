#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cosyvoice-deploy maintainers
# Apache License 2.0
"""Module tencent_security_group: the deployment's Tencent Cloud security group (official SDK)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: tencent_security_group
author: cosyvoice-deploy maintainers
short_description: Open the public ports in a Tencent Cloud security group and bind it to a CVM instance
description:
  - With O(state=query), finds the CVM instance by O(instance_id), else by O(address) (private or public
    IPv4) and returns the provider-neutral instance record with the ingress rules of every bound security
    group. Read-only.
  - With O(state=present), also ensures a security group named O(name) in the region carrying the marker tag
    O(marker_tag) (Tencent Cloud security groups belong to a region, not a VPC); refuses a same-named group
    without it. The group's ingress rules whose description starts with O(rule_description_prefix) are made
    exactly O(ports) x (O(cidrs) + O(cidrs_ipv6)); other rules are never touched. The group is then bound to
    the instance (CVM C(AssociateSecurityGroups)), keeping the groups it already has.
  - Uses the official SDK (C(tencentcloud-sdk-python-cvm), C(-vpc); C(TC3-HMAC-SHA256) signatures). API actions -
    CVM C(DescribeInstances); VPC C(DescribeSecurityGroups), C(DescribeSecurityGroupPolicies); and for changes
    VPC C(CreateSecurityGroup), C(CreateSecurityGroupPolicies), C(DeleteSecurityGroupPolicies) and CVM
    C(AssociateSecurityGroups).
  - Tested against a local contract server only, not against a real account.
options:
  region:
    description: Region of the instance, e.g. C(ap-guangzhou).
    type: str
    required: true
  access_key_id:
    description: SecretId. Empty - the environment variable C(TENCENTCLOUD_SECRET_ID).
    type: str
    default: ""
  access_key_secret:
    description: SecretKey. Empty - the environment variable C(TENCENTCLOUD_SECRET_KEY).
    type: str
    default: ""
  instance_id_var:
    description: Name of the inventory variable holding the instance id, for error messages.
    type: str
    default: tencent_instance_id
requirements:
  - tencentcloud-sdk-python-cvm
  - tencentcloud-sdk-python-vpc
extends_documentation_fragment:
  - cosyvoice.deploy.cloud_security_group_sdk
"""

EXAMPLES = r"""
- name: Open 7860/tcp in the deployment's group
  cosyvoice.deploy.tencent_security_group:
    region: ap-guangzhou
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
    from tencentcloud.common import credential
    from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
    from tencentcloud.common.profile.client_profile import ClientProfile
    from tencentcloud.common.profile.http_profile import HttpProfile
    from tencentcloud.cvm.v20170312 import cvm_client
    from tencentcloud.cvm.v20170312 import models as cvm_models
    from tencentcloud.vpc.v20170312 import models as vpc_models
    from tencentcloud.vpc.v20170312 import vpc_client

    HAS_SDK = True
except ImportError:
    HAS_SDK = False

#: Error codes that mean the SecretId/SecretKey pair is wrong (Tencent Cloud common error codes).
AUTH_CODES = frozenset(
    {
        "AuthFailure.SignatureFailure",
        "AuthFailure.SecretIdNotFound",
        "AuthFailure.InvalidSecretId",
        "AuthFailure.SignatureExpire",
        "AuthFailure.InvalidAuthorization",
        "AuthFailure.TokenFailure",
    }
)
CREDENTIALS = (
    "set cloud_security_group_access_key_id and cloud_security_group_access_key_secret (from vault), "
    "or TENCENTCLOUD_SECRET_ID and TENCENTCLOUD_SECRET_KEY in the controller's environment."
)


def _instance(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Neutral record (groups without rules) of one CVM DescribeInstances instance."""
    private = raw.get("PrivateIpAddresses") or []
    public = raw.get("PublicIpAddresses") or []
    return {
        "id": raw["InstanceId"],
        "network": (raw.get("VirtualPrivateCloud") or {}).get("VpcId") or "",
        "interface": "",
        "private_ip": private[0] if private else None,
        "public_ip": public[0] if public else None,
        "groups": [{"id": g, "name": ""} for g in raw.get("SecurityGroupIds") or []],
    }


def _ports(proto: str, port: str) -> list[tuple[int | None, int | None]]:
    """Port ranges of a policy's Port ('ALL', '80', '80-90', '80,443')."""
    if proto == "all" or port.upper() in ("ALL", ""):
        return [(None, None)]
    ranges: list[tuple[int | None, int | None]] = []
    for part in port.split(","):
        low, _, high = part.strip().partition("-")
        ranges.append((int(low), int(high or low)))
    return ranges


def _rules(policy: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Current rules of one ingress policy (none when it admits a group or an address template)."""
    cidr = policy.get("CidrBlock") or policy.get("Ipv6CidrBlock")
    if not cidr:
        return []
    proto = str(policy.get("Protocol") or "ALL").lower()
    return [
        {
            "proto": proto,
            "from_port": low,
            "to_port": high,
            "cidr": cidr,
            "description": policy.get("PolicyDescription") or "",
            "allow": str(policy.get("Action", "ACCEPT")).upper() == "ACCEPT",
            "ref": policy.get("PolicyIndex"),
        }
        for low, high in _ports(proto, str(policy.get("Port") or "ALL"))
    ]


class TencentProvider(common.CloudSgProvider):
    label = "Tencent Cloud CVM"

    def __init__(self, params: Mapping[str, Any]) -> None:
        super().__init__()
        cred = credential.Credential(params["access_key_id"], params["access_key_secret"])
        http = HttpProfile(reqTimeout=30)
        override = cloud_sg_module.endpoint(params["endpoint_url"])
        if override:
            http.protocol, http.endpoint = override
            http.scheme = http.protocol
        # No region breaker: it would fall back to another public endpoint.
        profile = ClientProfile(httpProfile=http, disable_region_breaker=True)
        self.cvm = cvm_client.CvmClient(cred, params["region"], profile)
        self.vpc = vpc_client.VpcClient(cred, params["region"], profile)

    def _call(self, service: str, action: str, request: dict[str, Any], write: str | None = None) -> dict[str, Any]:
        client, models = (self.cvm, cvm_models) if service == "cvm" else (self.vpc, vpc_models)
        model = getattr(models, f"{action}Request")()
        model.from_json_string(json.dumps(request))
        response = json.loads(getattr(client, action)(model).to_json_string())
        if write:
            self.writes.append(write)
        return response

    def find_instances(self, instance_id: str, address: str) -> list[dict[str, Any]]:
        if instance_id:
            queries = [{"InstanceIds": [instance_id]}]
        else:
            queries = [
                {"Filters": [{"Name": name, "Values": [address]}], "Limit": 100}
                for name in ("private-ip-address", "public-ip-address")
            ]
        found: list[dict[str, Any]] = []
        for query in queries:
            try:
                body = self._call("cvm", "DescribeInstances", query)
            except TencentCloudSDKException as err:
                if err.code == "InvalidInstanceId.NotFound":
                    continue
                raise
            found += [_instance(i) for i in body.get("InstanceSet") or []]
        return found

    def group_rules(self, group_id: str) -> tuple[str, list[dict[str, Any]]]:
        groups = self._call("vpc", "DescribeSecurityGroups", {"SecurityGroupIds": [group_id]}).get("SecurityGroupSet")
        body = self._call("vpc", "DescribeSecurityGroupPolicies", {"SecurityGroupId": group_id})
        ingress = (body.get("SecurityGroupPolicySet") or {}).get("Ingress") or []
        name = (groups or [{}])[0].get("SecurityGroupName", "")
        return name, [rule for policy in ingress for rule in _rules(policy)]

    def find_groups(self, name: str, network: str) -> list[dict[str, Any]]:
        request = {"Filters": [{"Name": "security-group-name", "Values": [name]}], "Limit": "100"}
        body = self._call("vpc", "DescribeSecurityGroups", request)
        return [
            {
                "id": g["SecurityGroupId"],
                "name": g.get("SecurityGroupName", ""),
                "tags": {t.get("Key"): t.get("Value") for t in g.get("TagSet") or []},
            }
            for g in body.get("SecurityGroupSet") or []
            if g.get("SecurityGroupName") == name
        ]

    def create_group(self, name: str, description: str, network: str, tags: Mapping[str, str]) -> str:
        request = {
            "GroupName": name,
            "GroupDescription": description,
            "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
        }
        body = self._call("vpc", "CreateSecurityGroup", request, write=f"created group {name}")
        return str(body["SecurityGroup"]["SecurityGroupId"])

    def add_rules(self, group_id: str, rules: Sequence[Mapping[str, Any]]) -> None:
        ingress = [
            {
                "Protocol": r["proto"].upper(),
                "Port": str(r["from_port"]),
                ("Ipv6CidrBlock" if ":" in r["cidr"] else "CidrBlock"): r["cidr"],
                "Action": "ACCEPT",
                "PolicyDescription": r["description"],
            }
            for r in rules
        ]
        request = {"SecurityGroupId": group_id, "SecurityGroupPolicySet": {"Ingress": ingress}}
        self._call("vpc", "CreateSecurityGroupPolicies", request, write=f"added {len(rules)} rule(s) to {group_id}")

    def remove_rules(self, group_id: str, rules: Sequence[Mapping[str, Any]]) -> None:
        indexes = sorted({int(r["ref"]) for r in rules})
        request = {
            "SecurityGroupId": group_id,
            "SecurityGroupPolicySet": {"Ingress": [{"PolicyIndex": i} for i in indexes]},
        }
        self._call("vpc", "DeleteSecurityGroupPolicies", request, write=f"removed {len(indexes)} rule(s) from {group_id}")

    def attach(self, instance: Mapping[str, Any], group_id: str) -> None:
        request = {"SecurityGroupIds": [group_id], "InstanceIds": [instance["id"]]}
        self._call("cvm", "AssociateSecurityGroups", request, write=f"bound {group_id} to {instance['id']}")


def explain_error(err: Exception) -> str | None:
    """A message for the SDK errors users can fix."""
    code = str(getattr(err, "code", "") or "")
    if code in AUTH_CODES:
        return f"Tencent Cloud rejected the credentials ({code}): fix them - {CREDENTIALS}"
    if code.startswith(("UnauthorizedOperation", "AuthFailure.Unauthorized")):
        return (
            f"Tencent Cloud denied the call ({code}): grant the CAM user the CVM/VPC actions listed in the "
            "cloud_security_group role's README."
        )
    if code:
        return f"Tencent Cloud API error {code}: {getattr(err, 'message', err)}"
    return None


def main() -> None:
    module = AnsibleModule(
        argument_spec=cloud_sg_module.argument_spec("tencent_instance_id"),
        supports_check_mode=True,
    )
    if not HAS_SDK:
        module.fail_json(msg=missing_required_lib("tencentcloud-sdk-python-cvm and tencentcloud-sdk-python-vpc"))
    cloud_sg_module.run(module, TencentProvider, explain_error, ("TENCENTCLOUD_SECRET_ID", "TENCENTCLOUD_SECRET_KEY"), CREDENTIALS)


if __name__ == "__main__":
    main()
