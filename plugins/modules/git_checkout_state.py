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

import os
import re

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.cosyvoice.deploy.plugins.module_utils.python_env import ENV_SPEC, read_env

COMMIT = re.compile(r"^[0-9a-f]{40}$")


def changed_tracked(porcelain: str) -> list[str]:
    """Lines of `git status --porcelain` about tracked files (untracked '??' ignored, as the git module does)."""
    return [line for line in porcelain.splitlines() if line.strip() and not line.startswith("??")]


def submodules_off(status: str) -> list[str]:
    """Lines of `git submodule status --recursive` for submodules not at their recorded commit ('-' not
    initialised, '+' another commit, 'U' merge conflicts)."""
    return [line for line in status.splitlines() if line and line[0] != " "]


def judge(version: str, resolved: str, head: str, origin: str, porcelain: str | None, submodules: str | None) -> str:
    """Why the checkout is not current ('' when it is)."""
    if not COMMIT.match(version.lower()):
        return "the version is not a full commit id"
    if not head:
        return "no checkout"
    if head != version.lower():
        return f"HEAD is {head}"
    if origin != resolved:
        return f"origin is {origin or 'not set'}, not {resolved}"
    if porcelain is None or submodules is None:
        return "git status could not be read"
    if changed_tracked(porcelain):
        return f"tracked files changed: {', '.join(changed_tracked(porcelain)[:5])}"
    if submodules_off(submodules):
        return f"submodules not at their recorded commit: {', '.join(submodules_off(submodules)[:5])}"
    return ""


def main() -> None:
    module = AnsibleModule(argument_spec={"repo": {"type": "str", "required": True},
                                          "dest": {"type": "path", "required": True},
                                          "version": {"type": "str", "required": True},
                                          "env": {"type": "dict", "options": ENV_SPEC}},
                           supports_check_mode=True)
    repo, dest, version = module.params["repo"], module.params["dest"], module.params["version"]
    git = module.get_bin_path("git")
    result = {"changed": False, "repo": repo, "current": False, "head": "", "why": "", "env": None}
    if not git:
        module.exit_json(**{**result, "why": "git is not installed"})
    rc, out, _ = module.run_command([git, "ls-remote", "--get-url", repo])
    if rc == 0 and out.strip():
        result["repo"] = out.strip()
    head = origin = ""
    porcelain = submodules = None
    if os.path.isdir(os.path.join(dest, ".git")) or os.path.isfile(os.path.join(dest, ".git")):
        rc, out, _ = module.run_command([git, "-C", dest, "rev-parse", "--verify", "HEAD"])
        head = out.strip() if rc == 0 else ""
        rc, out, _ = module.run_command([git, "-C", dest, "config", "--get", "remote.origin.url"])
        origin = out.strip() if rc == 0 else ""
        if head:
            # GIT_OPTIONAL_LOCKS=0: status does not refresh (write) the index.
            rc, out, _ = module.run_command([git, "-C", dest, "status", "--porcelain"],
                                            environ_update={"GIT_OPTIONAL_LOCKS": "0"})
            porcelain = out if rc == 0 else None
            rc, out, _ = module.run_command([git, "-C", dest, "submodule", "status", "--recursive"])
            submodules = out if rc == 0 else None
    why = judge(version, result["repo"], head, origin, porcelain, submodules)
    if not why and module.params["env"]:
        result["env"] = read_env(module, module.params["env"])
    module.exit_json(**{**result, "head": head, "current": not why, "why": why})


if __name__ == "__main__":
    main()
