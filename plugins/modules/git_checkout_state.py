#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cosyvoice-deploy maintainers
# Apache License 2.0
"""Whether a git checkout is exactly at a pinned commit, clean, with its submodules (read-only, offline)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: git_checkout_state
short_description: Tell whether a checkout is exactly at a pinned commit, clean, from the given repository (offline)
description:
  - Resolves O(repo) through git's C(url.<base>.insteadOf) rules (C(git ls-remote --get-url), which contacts
    nothing) and reads the checkout at O(dest) - C(HEAD), the C(origin) URL, local changes to tracked files
    (C(git status --porcelain), untracked files ignored as M(ansible.builtin.git) ignores them) and the
    submodules (C(git submodule status --recursive)).
  - RV(current) is true only when O(version) is a full commit id, C(HEAD) is that commit, C(origin) is the
    resolved URL, no tracked file is changed and every submodule is checked out at the commit the
    superproject records. Then M(ansible.builtin.git) (C(force), C(recursive)) would change nothing - but it
    would still fetch from the remote on every run; a role skips it on RV(current) and so re-runs without
    the network.
  - Anything unreadable (no git, no checkout, a command failing) makes RV(current) false; the role then runs
    M(ansible.builtin.git), which decides.
  - With O(env), the same run also reads what M(cosyvoice.deploy.python_env_state) reads (RV(env)), so that a
    role whose checkout is RV(current) - nothing will rewrite it - needs no second read of the environment.
  - Read-only; check mode runs it too. Environment variables of the task (e.g. C(GIT_CONFIG_*)) apply.
version_added: "1.11.0"
options:
  repo:
    description: The repository URL as configured (before C(insteadOf)).
    type: str
    required: true
  dest:
    description: The checkout's directory.
    type: path
    required: true
  version:
    description: The pinned version; only a full 40-character commit id can be RV(current).
    type: str
    required: true
  env:
    description:
      - Also read the Python environment built from this checkout, with the options of
        M(cosyvoice.deploy.python_env_state) (RV(env)). Read only when the checkout is RV(current) (the
        requirements of a checkout about to be replaced decide nothing); O(env.requirements_required) applies
        then.
    type: dict
    version_added: "1.14.0"
    suboptions:
      requirements:
        description: The requirements file to read (in the checkout).
        type: path
        required: true
      requirements_required:
        description: Fail when O(env.requirements) cannot be read (in a current checkout).
        type: bool
        default: true
      stamp:
        description: The fingerprint file the last install wrote.
        type: path
        required: true
      uv:
        description: The C(uv) binary to ask for its version; empty asks nothing.
        type: path
        default: ""
      venv:
        description: The venv directory.
        type: path
        required: true
extends_documentation_fragment:
  - cosyvoice.deploy.read_only
"""

EXAMPLES = r"""
- name: Read the checkout
  cosyvoice.deploy.git_checkout_state:
    repo: https://github.com/FunAudioLLM/CosyVoice.git
    dest: /opt/cosyvoice/src
    version: ace7c47f41bbd303aa6bf1ea80e6f9fbd595cd40
  register: checkout

- name: Check out the pinned commit (only when the checkout is not already exactly there)
  ansible.builtin.git:
    repo: "{{ checkout.repo }}"
    dest: /opt/cosyvoice/src
    version: ace7c47f41bbd303aa6bf1ea80e6f9fbd595cd40
    recursive: true
    force: true
  when: not checkout.current
"""

RETURN = r"""
repo:
  description: O(repo) after git's C(insteadOf) rules (O(repo) itself when git is missing or says nothing).
  returned: always
  type: str
current:
  description: Whether the checkout is exactly O(version), clean, from RV(repo), with its submodules.
  returned: always
  type: bool
head:
  description: The checkout's C(HEAD) commit; empty when there is no checkout.
  returned: always
  type: str
why:
  description: Why RV(current) is false (empty when it is true).
  returned: always
  type: str
env:
  description:
    - With O(env) and a RV(current) checkout, what M(cosyvoice.deploy.python_env_state) returns
      (C(requirements_content), C(stamp), C(uv_version), C(venv_exists)); otherwise null.
  returned: always
  type: dict
  version_added: "1.14.0"
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.cosyvoice.deploy.plugins.module_utils.git_checkout import CHECKOUT_SPEC, read_checkout


def main() -> None:
    module = AnsibleModule(argument_spec=CHECKOUT_SPEC, supports_check_mode=True)
    module.exit_json(changed=False, **read_checkout(module, module.params))


if __name__ == "__main__":
    main()
