"""The contract servers reject what the real APIs reject, and the adapters read their answers.

Fast (no ansible-playbook): raw HTTP to the fakes, and the modules' parsing helpers.
"""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import pytest
from ansible_collections.cosyvoice.deploy.plugins.module_utils import cloud_sg_common as common
from ansible_collections.cosyvoice.deploy.plugins.modules import aliyun_security_group as aliyun
from ansible_collections.cosyvoice.deploy.plugins.modules import tencent_security_group as tencent
from cn_harness import Cloud


def _provider(cloud: Cloud, key_id: str | None = None) -> common.CloudSgProvider:
    """The module's adapter, pointed at the fake."""
    params = {"region": cloud.region, "access_key_id": key_id or cloud.key_id, "access_key_secret": cloud.secret, "endpoint_url": cloud.fake.url}
    return aliyun.AliyunProvider(params) if cloud.provider == "aliyun" else tencent.TencentProvider(params)


def _where(cloud: Cloud, instance_id: str = "") -> dict[str, str]:
    return {"instance_id": instance_id, "address": "", "region": cloud.region, "id_var": cloud.id_var}


def _post(url: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url + "/", data=body, headers=headers, method="POST")  # noqa: S310 - loopback
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - loopback
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _forged(cloud: Cloud) -> tuple[dict[str, str], dict[str, str]]:
    """(headers without a signature, headers with a well-formed but wrong one) for a read call."""
    if cloud.provider == "aliyun":
        base = {"x-acs-action": "DescribeInstances", "x-acs-version": "2014-05-26", "x-acs-date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "x-acs-signature-nonce": "n1", "x-acs-content-sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}
        signed = "host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version"
        auth = f"ACS3-HMAC-SHA256 Credential={cloud.key_id},SignedHeaders={signed},Signature={'0' * 64}"
    else:
        now = int(time.time())
        base = {"Content-Type": "application/json", "X-TC-Action": "DescribeInstances", "X-TC-Version": "2017-03-12",
                "X-TC-Timestamp": str(now), "X-TC-Region": cloud.region}
        day = time.strftime("%Y-%m-%d", time.gmtime(now))
        auth = f"TC3-HMAC-SHA256 Credential={cloud.key_id}/{day}/cvm/tc3_request, SignedHeaders=content-type;host, Signature={'0' * 64}"
    return base, {**base, "Authorization": auth}


def _code(cloud: Cloud, answer: dict[str, Any]) -> str:
    return str(answer["Code"] if cloud.provider == "aliyun" else answer["Response"]["Error"]["Code"])


def test_fakes_reject_unsigned_and_wrongly_signed_requests(cloud: Cloud) -> None:
    unsigned, forged = _forged(cloud)
    body = b"" if cloud.provider == "aliyun" else b"{}"
    status, answer = _post(cloud.fake.url, unsigned, body)
    assert _code(cloud, answer) == ("IncompleteSignature" if cloud.provider == "aliyun" else "AuthFailure.InvalidAuthorization")
    status, answer = _post(cloud.fake.url, forged, body)
    assert _code(cloud, answer) == ("SignatureDoesNotMatch" if cloud.provider == "aliyun" else "AuthFailure.SignatureFailure")
    assert status == (400 if cloud.provider == "aliyun" else 200)  # Tencent API 3.0 reports errors in a 200
    assert cloud.fake.writes() == []


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ({"Protocol": "ALL", "Port": "ALL", "CidrBlock": "0.0.0.0/0"}, [("all", None, None)]),
        ({"Protocol": "TCP", "Port": "80,443", "CidrBlock": "0.0.0.0/0"}, [("tcp", 80, 80), ("tcp", 443, 443)]),
        ({"Protocol": "UDP", "Port": "1000-2000", "Ipv6CidrBlock": "::/0"}, [("udp", 1000, 2000)]),
        ({"Protocol": "TCP", "Port": "22", "SecurityGroupId": "sg-other"}, []),  # by group, not by address
    ],
)
def test_tencent_policies_become_rules(policy: dict[str, Any], expected: list[tuple[Any, ...]]) -> None:
    rules = tencent._rules({"PolicyIndex": 3, "Action": "ACCEPT", **policy})
    assert [(r["proto"], r["from_port"], r["to_port"]) for r in rules] == expected
    assert all(r["ref"] == 3 and r["allow"] for r in rules)


def test_aliyun_permissions_become_rules() -> None:
    rule = aliyun._rule({"IpProtocol": "ALL", "PortRange": "-1/-1", "SourceCidrIp": "10.0.0.0/8", "Policy": "Drop", "SecurityGroupRuleId": "sgr-1"})
    assert rule == {"proto": "all", "from_port": None, "to_port": None, "cidr": "10.0.0.0/8", "description": "", "allow": False, "ref": "sgr-1"}
    assert aliyun._rule({"IpProtocol": "TCP", "PortRange": "22/22", "SourceGroupId": "sg-x"}) is None
    assert aliyun._rule({"IpProtocol": "TCP", "PortRange": "80/90", "Ipv6SourceCidrIp": "::/0", "Policy": "Accept"})["to_port"] == 90


def test_an_unknown_access_key_is_reported_as_a_credentials_problem(cloud: Cloud) -> None:
    module = aliyun if cloud.provider == "aliyun" else tencent
    with pytest.raises(Exception) as err:  # noqa: PT011 - the SDK's own exception types
        common.lookup(_provider(cloud, key_id="LTAIunknown0000" if cloud.provider == "aliyun" else "AKIDunknown000000000"), _where(cloud, cloud.instance.id))
    code = "InvalidAccessKeyId.NotFound" if cloud.provider == "aliyun" else "AuthFailure.SecretIdNotFound"
    assert f"({code}): fix" in str(module.explain_error(err.value))
    assert cloud.fake.writes() == []


def test_an_unknown_instance_id_is_no_match(cloud: Cloud) -> None:
    """Aliyun answers an empty list, Tencent InvalidInstanceId.NotFound: both mean no instance."""
    unknown = "i-bp1zzzzzzzzzzzz" if cloud.provider == "aliyun" else "ins-zzzzzzzz"
    label = "Alibaba Cloud ECS instance" if cloud.provider == "aliyun" else "Tencent Cloud CVM instance"
    with pytest.raises(common.CloudSgError, match=f"No {label} {unknown} in region {cloud.region}: fix {cloud.id_var}"):
        common.lookup(_provider(cloud), _where(cloud, unknown))
    assert cloud.fake.actions() == ["DescribeInstances"]
