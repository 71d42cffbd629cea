#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cosyvoice-deploy maintainers
# Apache License 2.0
"""What decides whether a Python environment must be (re)built, read in one module run."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: python_env_state
short_description: Read what decides whether a Python environment must be (re)built, in one run
description:
  - Reads, without changing anything, the four things the C(cosyvoice.deploy.cosyvoice) role compares before it
    builds its venv - the upstream requirements file, the fingerprint the last install recorded, the version of
    the C(uv) binary, and whether the venv's interpreter exists. They were four module runs (two
    M(ansible.builtin.slurp), a C(uv --version) command, the C(creates) check of the venv command); a converged
    host now pays one.
  - Read-only; check mode runs it too.
version_added: "1.10.0"
options:
  requirements:
    description: The requirements file to read (upstream's C(requirements.txt) in the checkout).
    type: path
    required: true
  requirements_required:
    description:
      - Fail when O(requirements) cannot be read. V(false) returns RV(requirements_content) null instead (check mode
        on a new host, where the checkout does not exist yet).
    type: bool
    default: true
  stamp:
    description: The fingerprint file the last install wrote (JSON). Missing or unreadable gives RV(stamp) empty.
    type: path
    required: true
  uv:
    description: The C(uv) binary to ask for its version; empty asks nothing (RV(uv_version) is then empty).
    type: path
    default: ""
  venv:
    description: The venv directory; RV(venv_exists) tells whether its C(bin/python) exists.
    type: path
    required: true
extends_documentation_fragment:
  - cosyvoice.deploy.read_only
"""

EXAMPLES = r"""
- name: Read what decides whether the environment must be (re)built
  cosyvoice.deploy.python_env_state:
    requirements: /opt/cosyvoice/src/requirements.txt
    stamp: /opt/cosyvoice/venv/.requirements.stamp
    uv: /opt/cosyvoice/tools/bin/uv
    venv: /opt/cosyvoice/venv
  register: env_state
"""

RETURN = r"""
requirements_content:
  description:
    - The requirements file, base64-encoded as M(ansible.builtin.slurp) returns it (so that a fingerprint computed
      from it stays the same as one computed from slurp's C(content)); null when it could not be read.
  returned: always
  type: str
stamp:
  description: The fingerprint file's text, stripped; empty when it is missing or unreadable.
  returned: always
  type: str
uv_version:
  description: The version C(uv --version) prints (C(0.5.11) of C(uv 0.5.11 (hash date))); empty when O(uv) is empty,
    missing, or does not answer as uv.
  returned: always
  type: str
  sample: 0.5.11
venv_exists:
  description: Whether O(venv)C(/bin/python) exists.
  returned: always
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.cosyvoice.deploy.plugins.module_utils.python_env import ENV_SPEC, read_env


def main() -> None:
    module = AnsibleModule(argument_spec=ENV_SPEC, supports_check_mode=True)
    module.exit_json(changed=False, **read_env(module, module.params))


if __name__ == "__main__":
    main()
