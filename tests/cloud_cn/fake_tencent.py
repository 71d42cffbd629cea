"""A local contract server for the Tencent Cloud API 3.0 (CVM and VPC, version 2017-03-12).

Only what tencent_security_group calls: CVM DescribeInstances, AssociateSecurityGroups; VPC
DescribeSecurityGroups, DescribeSecurityGroupPolicies, CreateSecurityGroup,
CreateSecurityGroupPolicies, DeleteSecurityGroupPolicies. One endpoint serves both services
(the service is the one named in the credential scope). Requests must be signed with
TC3-HMAC-SHA256 as documented ("Signature v3": canonical request over content-type and host,
key derived from date/service/tc3_request, X-TC-Timestamp within 5 minutes). Answers are
HTTP 200 ``{"Response": {..., "RequestId"}}``, errors ``{"Response": {"Error": {Code,
Message}, "RequestId"}}`` with the documented common and API error codes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
import uuid
from datetime import datetime, timezone
from typing import Any

from fake_base import ApiError, FakeCloud, Group, Instance, Rule, World

VERSION = "2017-03-12"
_AUTH = re.compile(
    r"^TC3-HMAC-SHA256 Credential=([^/]+)/(\d{4}-\d{2}-\d{2})/(\w+)/tc3_request, SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})$"
)
_ACTIONS = {
    "cvm": {"DescribeInstances", "AssociateSecurityGroups"},
    "vpc": {
        "DescribeSecurityGroups",
        "DescribeSecurityGroupPolicies",
        "CreateSecurityGroup",
        "CreateSecurityGroupPolicies",
        "DeleteSecurityGroupPolicies",
    },
}


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def tc3_signature(secret_key: str, date: str, service: str, string_to_sign: str) -> str:
    key = _hmac(_hmac(_hmac(f"TC3{secret_key}".encode(), date), service), "tc3_request")
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


class FakeTencent(FakeCloud):
    def __init__(self, region: str = "ap-guangzhou", credentials: dict[str, str] | None = None) -> None:
        super().__init__(World("sg-"), credentials or {"AKIDtestsecretid0001": "test-secret-key"})
        self.region = region

    def add_instance(self, vpc: str, private_ip: str, public_ip: str, groups: list[str]) -> Instance:
        inst = Instance(self.world.new_id("ins-"), vpc, private_ip, public_ip, list(groups))
        self.world.instances[inst.id] = inst
        return inst

    # --- protocol ---------------------------------------------------------------------
    def error_body(self, err: ApiError) -> dict[str, Any]:
        return {"Response": {"Error": {"Code": err.code, "Message": err.message}, "RequestId": str(uuid.uuid4())}}

    def _verify(self, method: str, path: str, headers: dict[str, str], body: bytes) -> str:
        """Check the TC3 signature; return the service it was signed for."""
        match = _AUTH.match(headers.get("authorization", ""))
        if not match:
            raise ApiError(200, "AuthFailure.InvalidAuthorization", "Authorization header is malformed.")
        secret_id, date, service, signed_text, signature = match.groups()
        signed = signed_text.split(";")
        if not {"content-type", "host"} <= set(signed):
            raise ApiError(200, "AuthFailure.InvalidAuthorization", "SignedHeaders must include content-type and host.")
        if secret_id not in self.credentials:
            raise ApiError(200, "AuthFailure.SecretIdNotFound", "The SecretId is not found, please ensure that your SecretId is correct.")
        timestamp = int(headers.get("x-tc-timestamp", "0"))
        if abs(timestamp - time.time()) > 300:
            raise ApiError(200, "AuthFailure.SignatureExpire", "Signature expired. Timestamp is more than 5 minutes off.")
        if datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d") != date:
            raise ApiError(200, "AuthFailure.SignatureFailure", "The credential scope date does not match X-TC-Timestamp.")
        canon_headers = "".join(f"{h}:{headers.get(h, '').strip().lower()}\n" for h in signed)
        query = path.partition("?")[2] if method == "GET" else ""
        payload = b"" if method == "GET" else body
        canon = f"{method}\n/\n{query}\n{canon_headers}\n{signed_text}\n{hashlib.sha256(payload).hexdigest()}"
        to_sign = f"TC3-HMAC-SHA256\n{timestamp}\n{date}/{service}/tc3_request\n{hashlib.sha256(canon.encode()).hexdigest()}"
        if not hmac.compare_digest(tc3_signature(self.credentials[secret_id], date, service, to_sign), signature):
            raise ApiError(200, "AuthFailure.SignatureFailure", "The provided credentials could not be validated. Please check your signature is correct.")
        return service

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[str, dict[str, Any]]:
        service = self._verify(method, path, headers, body)
        action = headers.get("x-tc-action", "")
        if action not in _ACTIONS.get(service, set()) or headers.get("x-tc-version") != VERSION:
            raise ApiError(200, "InvalidAction", f"The requested action {action} of {service} ({headers.get('x-tc-version')}) does not exist.")
        if headers.get("x-tc-region") != self.region:
            raise ApiError(200, "UnsupportedRegion", "The action does not support this region.")
        params = json.loads(body or b"{}")
        answer = getattr(self, f"_{action}")(params)
        answer["RequestId"] = str(uuid.uuid4())
        return action, {"Response": answer}

    # --- CVM --------------------------------------------------------------------------
    def _DescribeInstances(self, params: dict[str, Any]) -> dict[str, Any]:  # noqa: N802 - API action names
        found = list(self.world.instances.values())
        if params.get("InstanceIds") and params.get("Filters"):
            raise ApiError(200, "InvalidParameter", "InstanceIds and Filters cannot be specified together.")
        for instance_id in params.get("InstanceIds") or []:
            if not re.fullmatch(r"ins-[0-9a-z]{8}", instance_id):
                raise ApiError(200, "InvalidInstanceId.Malformed", f"Invalid instance id {instance_id}.")
            if instance_id not in self.world.instances:
                raise ApiError(200, "InvalidInstanceId.NotFound", f"The instance {instance_id} is not found.")
        if params.get("InstanceIds"):
            found = [i for i in found if i.id in params["InstanceIds"]]
        fields = {"private-ip-address": "private_ip", "public-ip-address": "public_ip"}
        for filt in params.get("Filters") or []:
            if filt["Name"] not in fields:
                raise ApiError(200, "InvalidFilter", f"Filter {filt['Name']} is not supported by this fake.")
            found = [i for i in found if getattr(i, fields[filt["Name"]]) in filt["Values"]]
        return {"TotalCount": len(found), "InstanceSet": [self._instance(i) for i in found]}

    def _instance(self, inst: Instance) -> dict[str, Any]:
        return {
            "InstanceId": inst.id,
            "InstanceState": "RUNNING",
            "Placement": {"Zone": f"{self.region}-3"},
            "VirtualPrivateCloud": {"VpcId": inst.vpc, "SubnetId": "subnet-1"},
            "PrivateIpAddresses": [inst.private_ip],
            "PublicIpAddresses": [inst.public_ip] if inst.public_ip else None,
            "SecurityGroupIds": list(inst.groups),
        }

    def _AssociateSecurityGroups(self, params: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        for group_id in params.get("SecurityGroupIds") or []:
            self._group(group_id)
        for instance_id in params.get("InstanceIds") or []:
            inst = self.world.instances.get(instance_id)
            if inst is None:
                raise ApiError(200, "InvalidInstanceId.NotFound", f"The instance {instance_id} is not found.")
            inst.groups += [g for g in params["SecurityGroupIds"] if g not in inst.groups]
        return {}

    # --- VPC --------------------------------------------------------------------------
    def _group(self, group_id: str) -> Group:
        if group_id not in self.world.groups:
            raise ApiError(200, "ResourceNotFound", f"The security group {group_id} does not exist.")
        return self.world.groups[group_id]

    def _DescribeSecurityGroups(self, params: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        groups = list(self.world.groups.values())
        if params.get("SecurityGroupIds"):
            groups = [g for g in groups if g.id in params["SecurityGroupIds"]]
        for filt in params.get("Filters") or []:
            if filt["Name"] == "security-group-name":
                groups = [g for g in groups if g.name in filt["Values"]]
            elif filt["Name"] == "security-group-id":
                groups = [g for g in groups if g.id in filt["Values"]]
        return {
            "TotalCount": len(groups),
            "SecurityGroupSet": [
                {
                    "SecurityGroupId": g.id,
                    "SecurityGroupName": g.name,
                    "SecurityGroupDesc": g.description,
                    "ProjectId": "0",
                    "TagSet": [{"Key": k, "Value": v} for k, v in g.tags.items()],
                }
                for g in groups
            ],
        }

    def _DescribeSecurityGroupPolicies(self, params: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        group = self._group(params.get("SecurityGroupId", ""))
        ingress = [
            {
                "PolicyIndex": index,
                "Protocol": r.proto.upper(),
                "Port": "ALL" if r.from_port is None else (str(r.from_port) if r.from_port == r.to_port else f"{r.from_port}-{r.to_port}"),
                ("Ipv6CidrBlock" if ":" in r.cidr else "CidrBlock"): r.cidr,
                "Action": "ACCEPT" if r.allow else "DROP",
                "PolicyDescription": r.description,
            }
            for index, r in enumerate(group.rules)
        ]
        return {"SecurityGroupPolicySet": {"Version": str(len(self.log)), "Ingress": ingress, "Egress": []}}

    def _CreateSecurityGroup(self, params: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        if not params.get("GroupName") or not params.get("GroupDescription"):
            raise ApiError(200, "MissingParameter", "GroupName and GroupDescription are required.")
        tags = {t["Key"]: t["Value"] for t in params.get("Tags") or []}
        group = self.world.add_group(params["GroupName"], "", tags)
        group.description = params["GroupDescription"]
        return {"SecurityGroup": {"SecurityGroupId": group.id, "SecurityGroupName": group.name, "SecurityGroupDesc": group.description}}

    def _CreateSecurityGroupPolicies(self, params: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        group = self._group(params.get("SecurityGroupId", ""))
        for policy in (params.get("SecurityGroupPolicySet") or {}).get("Ingress") or []:
            port = str(policy["Port"])
            low, _, high = port.partition("-")
            rule = Rule(
                policy["Protocol"].lower(),
                None if port == "ALL" else int(low),
                None if port == "ALL" else int(high or low),
                policy.get("CidrBlock") or policy["Ipv6CidrBlock"],
                policy.get("PolicyDescription", ""),
                policy["Action"] == "ACCEPT",
            )
            if any(r.as_tuple()[:4] == rule.as_tuple()[:4] and r.allow == rule.allow for r in group.rules):
                raise ApiError(200, "InvalidParameterValue.Duplicate", "The security group policy already exists.")
            self.world.add_rule(group, rule)
        return {}

    def _DeleteSecurityGroupPolicies(self, params: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        group = self._group(params.get("SecurityGroupId", ""))
        indexes = {p["PolicyIndex"] for p in (params.get("SecurityGroupPolicySet") or {}).get("Ingress") or []}
        if not indexes or not indexes <= set(range(len(group.rules))):
            raise ApiError(200, "InvalidParameterValue.Range", f"PolicyIndex {sorted(indexes)} is out of range.")
        group.rules = [r for i, r in enumerate(group.rules) if i not in indexes]
        return {}
