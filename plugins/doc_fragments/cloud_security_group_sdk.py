# -*- coding: utf-8 -*-
# Copyright: cosyvoice-deploy maintainers
# Apache License 2.0
"""Options shared by the SDK security group modules (aliyun_security_group, tencent_security_group)."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  state:
    description: C(query) reads only; C(present) ensures the group, its rules and its attachment.
    type: str
    choices: [present, query]
    default: present
  endpoint_url:
    description:
      - Endpoint override (C(http://127.0.0.1:PORT) for tests), used for every API call; empty uses the SDK's
        endpoint for O(region).
    type: str
    default: ""
  instance_id:
    description: The instance id; empty to find the instance by O(address).
    type: str
    default: ""
  address:
    description: IPv4 address of the instance (private or public; on Alibaba Cloud also the EIP), used when O(instance_id) is empty.
    type: str
    default: ""
  name:
    description: Name of the managed group.
    type: str
    default: cosyvoice-tts
  description:
    description: Description of the group (used on creation).
    type: str
    default: CosyVoice TTS public ports (managed by Ansible)
  tags:
    description: Tags set on creation (the marker tag is added).
    type: dict
    default: {}
  marker_tag:
    description: The one tag that marks a group as this role's; a same-named group without it is refused.
    type: dict
    default: {managed-by: ansible/cloud_security_group}
  ports:
    description: Ports to allow.
    type: list
    elements: dict
    default: []
    suboptions:
      port:
        description: Port number.
        type: int
        required: true
      proto:
        description: Protocol.
        type: str
        choices: [tcp, udp]
        default: tcp
      purpose:
        description: Free text, part of the rule description.
        type: str
  cidrs:
    description: IPv4 networks allowed to reach the ports.
    type: list
    elements: str
    default: []
  cidrs_ipv6:
    description: IPv6 networks allowed to reach the ports.
    type: list
    elements: str
    default: []
  rule_description_prefix:
    description: Rules whose description starts with this are the module's own; no other rule is ever removed.
    type: str
    default: "cosyvoice "
attributes:
  check_mode:
    description: Reads only and reports what it would change.
    support: full
  diff_mode:
    description: The group's ingress rules before and after.
    support: full
"""
