# -*- coding: utf-8 -*-
# Copyright: cosyvoice-deploy maintainers
# Apache License 2.0
"""The part of the SDK security group modules that is the same for every provider:
the argument spec, the credential check and running lookup/apply with clear failures."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.cosyvoice.deploy.plugins.module_utils import cloud_sg_common as common
from ansible_collections.cosyvoice.deploy.plugins.module_utils import netshape


def argument_spec(id_var: str) -> dict[str, Any]:
    """Options shared by aliyun_security_group and tencent_security_group."""
    return {
        "state": {"type": "str", "choices": ["present", "query"], "default": "present"},
        "region": {"type": "str", "required": True},
        "endpoint_url": {"type": "str", "default": ""},
        # Empty (the role's default) means: the SDK's documented environment variable.
        "access_key_id": {"type": "str", "no_log": True, "default": ""},
        "access_key_secret": {"type": "str", "no_log": True, "default": ""},
        "instance_id": {"type": "str", "default": ""},
        "address": {"type": "str", "default": ""},
        "instance_id_var": {"type": "str", "default": id_var},
        "name": {"type": "str", "default": "cosyvoice-tts"},
        "description": {"type": "str", "default": "CosyVoice TTS public ports (managed by Ansible)"},
        "tags": {"type": "dict", "default": {}},
        "marker_tag": {"type": "dict", "default": {"managed-by": "ansible/cloud_security_group"}},
        "ports": netshape.PORTS_SPEC,
        "cidrs": {"type": "list", "elements": "str", "default": []},
        "cidrs_ipv6": {"type": "list", "elements": "str", "default": []},
        "rule_description_prefix": {"type": "str", "default": common.DEFAULT_PREFIX},
    }


def endpoint(url: str) -> tuple[str, str] | None:
    """(scheme, host[:port]) of an endpoint override, None when empty."""
    if not url:
        return None
    parts = urlsplit(url)
    return (parts.scheme or "https", parts.netloc)


def _spec(params: Mapping[str, Any]) -> dict[str, Any]:
    """What cloud_sg_common.apply needs, from the module's parameters."""
    (marker_key, marker_value), = params["marker_tag"].items()
    tags = {str(k): str(v) for k, v in params["tags"].items()}
    tags[str(marker_key)] = str(marker_value)
    return {
        "where": {
            "instance_id": params["instance_id"],
            "address": params["address"],
            "region": params["region"],
            "id_var": params["instance_id_var"],
        },
        "name": params["name"],
        "description": params["description"],
        "tags": tags,
        "marker": (str(marker_key), str(marker_value)),
        "ports": params["ports"],
        "cidrs": params["cidrs"],
        "cidrs_ipv6": params["cidrs_ipv6"],
        "prefix": params["rule_description_prefix"],
    }


def run(
    module: AnsibleModule,
    make_provider: Callable[[Mapping[str, Any]], common.CloudSgProvider],
    explain_error: Callable[[Exception], str | None],
    credential_env: tuple[str, str],
    credential_hint: str,
) -> None:
    """Check the credentials are given, then query or apply; exit the module."""
    params = module.params
    for name, env in zip(("access_key_id", "access_key_secret"), credential_env, strict=True):
        params[name] = params[name] or os.environ.get(env, "")
        if params[name]:
            module.no_log_values.add(params[name])  # masked in any output, like a no_log option
    if len(params["marker_tag"]) != 1:
        module.fail_json(msg="marker_tag must have exactly one key. Nothing was changed.")
    if not params["access_key_id"] or not params["access_key_secret"]:
        module.fail_json(msg=f"No credentials: {credential_hint} Nothing was changed.")
    if not params["instance_id"] and not params["address"]:
        module.fail_json(msg="Set instance_id or address to find the instance. Nothing was changed.")
    provider = make_provider(params)
    spec = _spec(params)
    try:
        if params["state"] == "query":
            module.exit_json(changed=False, instance=common.lookup(provider, spec["where"]))
        result = common.apply(provider, spec, module.check_mode)
    except common.CloudSgError as err:
        module.fail_json(msg=common.failure_message(provider, str(err)))
    except Exception as err:  # noqa: BLE001 - every SDK error becomes a clear message
        text = explain_error(err) or f"{provider.label} API call failed: {err}"
        module.fail_json(msg=common.failure_message(provider, text), error_code=getattr(err, "code", None))
    diff = result.pop("diff")
    module.exit_json(diff=diff, writes=provider.writes, **result)
