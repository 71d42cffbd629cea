"""A local contract server for the Alibaba Cloud ECS API (RPC style, version 2014-05-26).

Only what aliyun_security_group calls: DescribeInstances, DescribeSecurityGroups,
DescribeSecurityGroupAttribute, CreateSecurityGroup, AuthorizeSecurityGroup,
RevokeSecurityGroup, JoinSecurityGroup. Requests must carry the V3 signature the SDK sends
(``Authorization: ACS3-HMAC-SHA256 Credential=<AccessKeyId>,SignedHeaders=...,Signature=...``,
documented in "Request syntax and signature method V3"): the canonical request is rebuilt
from what arrived and HMAC-SHA256'd with the key's secret. Errors are JSON
``{RequestId, Code, Message}`` with the documented codes and HTTP statuses.
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
from urllib.parse import parse_qsl, quote, urlsplit

from fake_base import ApiError, FakeCloud, Instance, Rule, World

VERSION = "2014-05-26"
_ALGORITHM = "ACS3-HMAC-SHA256"
_AUTH = re.compile(r"^ACS3-HMAC-SHA256 Credential=([^,]+),SignedHeaders=([^,]+),Signature=([0-9a-f]+)$")
#: Headers the V3 signature must cover (plus every other x-acs-* header sent).
_MUST_SIGN = {"host", "x-acs-action", "x-acs-version", "x-acs-date", "x-acs-signature-nonce", "x-acs-content-sha256"}


def _enc(value: str) -> str:
    return quote(value, safe="~")


def canonical_request(method: str, path: str, query: list[tuple[str, str]], headers: dict[str, str], signed: list[str], payload_hash: str) -> str:
    """The V3 canonical request (percent-encoded sorted query, signed headers, payload hash)."""
    canon_query = "&".join(f"{_enc(k)}={_enc(v)}" for k, v in sorted(query))
    canon_headers = "".join(f"{h}:{headers.get(h, '').strip()}\n" for h in signed)
    return f"{method}\n{path or '/'}\n{canon_query}\n{canon_headers}\n{';'.join(signed)}\n{payload_hash}"


def _indexed(params: dict[str, str], prefix: str) -> list[Any]:
    """``Prefix.1.Key``/``Prefix.1`` parameters as a list of dicts/values, in index order."""
    items: dict[int, Any] = {}
    for key, value in params.items():
        match = re.fullmatch(re.escape(prefix) + r"\.(\d+)(?:\.(\w+))?", key)
        if match:
            index, sub = int(match[1]), match[2]
            if sub:
                items.setdefault(index, {})[sub] = value
            else:
                items[index] = value
    return [items[i] for i in sorted(items)]


class FakeAliyun(FakeCloud):
    def __init__(self, region: str = "cn-hangzhou", credentials: dict[str, str] | None = None) -> None:
        super().__init__(World("sg-"), credentials or {"LTAItestkey0001": "test-secret"})
        self.region = region
        self._nonces: set[str] = set()

    # --- the world, in ECS terms -------------------------------------------------------
    def add_instance(self, vpc: str, private_ip: str, public_ip: str, groups: list[str]) -> Instance:
        inst = Instance(self.world.new_id("i-bp1"), vpc, private_ip, public_ip, list(groups))
        self.world.instances[inst.id] = inst
        return inst

    # --- protocol ---------------------------------------------------------------------
    def error_body(self, err: ApiError) -> dict[str, Any]:
        return {"RequestId": str(uuid.uuid4()).upper(), "HostId": "ecs.aliyuncs.com", "Code": err.code, "Message": err.message}

    def _verify(self, method: str, path: str, query: list[tuple[str, str]], headers: dict[str, str], body: bytes) -> None:
        match = _AUTH.match(headers.get("authorization", ""))
        if not match:
            raise ApiError(400, "IncompleteSignature", "The request signature does not conform to Aliyun standards.")
        key_id, signed_text, signature = match[1], match[2], match[3]
        signed = signed_text.split(";")
        unsigned = (_MUST_SIGN | {h for h in headers if h.startswith("x-acs-")}) - set(signed)
        if unsigned or signed != sorted(signed):
            raise ApiError(400, "IncompleteSignature", f"The request signature does not cover {sorted(unsigned)}.")
        if key_id not in self.credentials:
            raise ApiError(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
        payload_hash = hashlib.sha256(body).hexdigest()
        if headers.get("x-acs-content-sha256") != payload_hash:
            raise ApiError(400, "SignatureDoesNotMatch", "The x-acs-content-sha256 header does not match the body.")
        canon = canonical_request(method, path, query, headers, signed, payload_hash)
        to_sign = f"{_ALGORITHM}\n{hashlib.sha256(canon.encode()).hexdigest()}"
        expected = hmac.new(self.credentials[key_id].encode(), to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature):
            raise ApiError(400, "SignatureDoesNotMatch", "Specified signature is not matched with our calculation.")
        when = datetime.strptime(headers.get("x-acs-date", ""), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        if abs(when.timestamp() - time.time()) > 900:
            raise ApiError(400, "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired.")
        nonce = headers["x-acs-signature-nonce"]
        if nonce in self._nonces:
            raise ApiError(400, "SignatureNonceUsed", "Specified signature nonce was used already.")
        self._nonces.add(nonce)

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[str, dict[str, Any]]:
        parts = urlsplit(path)
        query = parse_qsl(parts.query, keep_blank_values=True)
        self._verify(method, parts.path, query, headers, body)
        action = headers.get("x-acs-action", "")
        if headers.get("x-acs-version") != VERSION:
            raise ApiError(400, "InvalidVersion", "Specified parameter Version is not valid.")
        params = dict(query)
        params.update(parse_qsl(body.decode(), keep_blank_values=True))
        if params.get("RegionId") != self.region:
            raise ApiError(404, "InvalidRegionId.NotFound", "The specified RegionId does not exist.")
        handler = getattr(self, f"_{action}", None)
        if handler is None:
            raise ApiError(404, "InvalidAction.NotFound", "Specified api is not found, please check your url and method.")
        answer = handler(params)
        answer["RequestId"] = str(uuid.uuid4()).upper()
        return action, answer

    # --- actions ----------------------------------------------------------------------
    def _group(self, params: dict[str, str]) -> Any:
        group = self.world.groups.get(params.get("SecurityGroupId", ""))
        if group is None:
            raise ApiError(404, "InvalidSecurityGroupId.NotFound", "The specified SecurityGroupId does not exist.")
        return group

    def _DescribeInstances(self, params: dict[str, str]) -> dict[str, Any]:  # noqa: N802 - API action names
        found = list(self.world.instances.values())
        filters = {"InstanceIds": "id", "PrivateIpAddresses": "private_ip", "PublicIpAddresses": "public_ip"}
        for param, attr in filters.items():
            if param in params:
                wanted = set(json.loads(params[param]))
                found = [i for i in found if getattr(i, attr) in wanted]
        if "EipAddresses" in params:
            found = []  # the fake world has no EIPs
        return {
            "TotalCount": len(found),
            "PageNumber": 1,
            "PageSize": int(params.get("PageSize", 10)),
            "Instances": {"Instance": [self._instance(i) for i in found]},
        }

    def _instance(self, inst: Instance) -> dict[str, Any]:
        return {
            "InstanceId": inst.id,
            "Status": "Running",
            "RegionId": self.region,
            "InstanceNetworkType": "vpc",
            "VpcAttributes": {"VpcId": inst.vpc, "VSwitchId": "vsw-1", "PrivateIpAddress": {"IpAddress": [inst.private_ip]}},
            "PublicIpAddress": {"IpAddress": [inst.public_ip] if inst.public_ip else []},
            "EipAddress": {"IpAddress": "", "AllocationId": ""},
            "SecurityGroupIds": {"SecurityGroupId": list(inst.groups)},
            "NetworkInterfaces": {
                "NetworkInterface": [{"NetworkInterfaceId": f"eni-{inst.id[2:]}", "Type": "Primary", "PrimaryIpAddress": inst.private_ip}]
            },
        }

    def _DescribeSecurityGroups(self, params: dict[str, str]) -> dict[str, Any]:  # noqa: N802
        groups = list(self.world.groups.values())
        if "VpcId" in params:
            groups = [g for g in groups if g.vpc == params["VpcId"]]
        if "SecurityGroupName" in params:
            groups = [g for g in groups if g.name == params["SecurityGroupName"]]
        if "SecurityGroupIds" in params:
            groups = [g for g in groups if g.id in json.loads(params["SecurityGroupIds"])]
        return {
            "TotalCount": len(groups),
            "SecurityGroups": {
                "SecurityGroup": [
                    {
                        "SecurityGroupId": g.id,
                        "SecurityGroupName": g.name,
                        "VpcId": g.vpc,
                        "Description": g.description,
                        "Tags": {"Tag": [{"TagKey": k, "TagValue": v} for k, v in g.tags.items()]},
                    }
                    for g in groups
                ]
            },
        }

    def _DescribeSecurityGroupAttribute(self, params: dict[str, str]) -> dict[str, Any]:  # noqa: N802
        group = self._group(params)
        perms = [
            {
                "SecurityGroupRuleId": r.rule_id,
                "Direction": "ingress",
                "IpProtocol": r.proto.upper(),
                "PortRange": "-1/-1" if r.from_port is None else f"{r.from_port}/{r.to_port}",
                ("Ipv6SourceCidrIp" if ":" in r.cidr else "SourceCidrIp"): r.cidr,
                "Policy": "Accept" if r.allow else "Drop",
                "Priority": 1,
                "Description": r.description,
            }
            for r in group.rules
        ]
        return {
            "SecurityGroupId": group.id,
            "SecurityGroupName": group.name,
            "VpcId": group.vpc,
            "Description": group.description,
            "Permissions": {"Permission": perms},
        }

    def _CreateSecurityGroup(self, params: dict[str, str]) -> dict[str, Any]:  # noqa: N802
        for name in ("VpcId", "SecurityGroupName"):
            if not params.get(name):
                raise ApiError(400, "MissingParameter", f"The input parameter {name} that is mandatory is missing.")
        tags = {t["Key"]: t.get("Value", "") for t in _indexed(params, "Tag")}
        group = self.world.add_group(params["SecurityGroupName"], params["VpcId"], tags)
        group.description = params.get("Description", "")
        return {"SecurityGroupId": group.id}

    def _AuthorizeSecurityGroup(self, params: dict[str, str]) -> dict[str, Any]:  # noqa: N802
        group = self._group(params)
        for perm in _indexed(params, "Permissions"):
            low, _, high = perm["PortRange"].partition("/")
            rule = Rule(
                perm["IpProtocol"].lower(),
                int(low),
                int(high),
                perm.get("SourceCidrIp") or perm["Ipv6SourceCidrIp"],
                perm.get("Description", ""),
                perm.get("Policy", "accept").lower() == "accept",
            )
            if any(r.as_tuple()[:4] == rule.as_tuple()[:4] and r.allow == rule.allow for r in group.rules):
                raise ApiError(400, "InvalidPermission.Duplicate", "The specified rule already exists.")
            self.world.add_rule(group, rule)
        return {}

    def _RevokeSecurityGroup(self, params: dict[str, str]) -> dict[str, Any]:  # noqa: N802
        group = self._group(params)
        ids = set(_indexed(params, "SecurityGroupRuleId"))
        if not ids or not ids <= {r.rule_id for r in group.rules}:
            raise ApiError(404, "InvalidSecurityGroupRuleId.NotFound", "The specified security group rule does not exist.")
        group.rules = [r for r in group.rules if r.rule_id not in ids]
        return {}

    def _JoinSecurityGroup(self, params: dict[str, str]) -> dict[str, Any]:  # noqa: N802
        group = self._group(params)
        inst = self.world.instances.get(params.get("InstanceId", ""))
        if inst is None:
            raise ApiError(404, "InvalidInstanceId.NotFound", "The specified InstanceId does not exist.")
        if group.vpc != inst.vpc:
            raise ApiError(403, "InvalidSecurityGroup.VpcMismatch", "The specified security group and instance are not in the same VPC.")
        if group.id in inst.groups:
            raise ApiError(403, "InvalidInstanceId.AlreadyExists", "The specified instance already exists in the specified security group.")
        inst.groups.append(group.id)
        return {}
