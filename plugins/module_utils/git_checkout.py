# -*- coding: utf-8 -*-
# Copyright: cosyvoice-deploy maintainers
# Apache License 2.0
"""Whether a git checkout is exactly at a pinned commit, clean, with its submodules (read-only, offline): shared
by git_checkout_state and by package_state's `checkout` (the cosyvoice role's first read)."""

from __future__ import annotations

import os
import re

from ansible_collections.cosyvoice.deploy.plugins.module_utils.python_env import ENV_SPEC, read_env

COMMIT = re.compile(r"^[0-9a-f]{40}$")
GIT_MISSING = "git is not installed"


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


# The options of the read (git_checkout_state's, package_state's checkout suboptions).
CHECKOUT_SPEC = {"repo": {"type": "str", "required": True},
                 "dest": {"type": "path", "required": True},
                 "version": {"type": "str", "required": True},
                 "env": {"type": "dict", "options": ENV_SPEC}}


def read_checkout(module, params: dict) -> dict:
    """{repo, current, head, why, env} as git_checkout_state returns them (params: its options). Without git,
    `why` is 'git is not installed'."""
    repo, dest, version = params["repo"], params["dest"], params["version"]
    git = module.get_bin_path("git")
    result = {"repo": repo, "current": False, "head": "", "why": "", "env": None}
    if not git:
        return {**result, "why": GIT_MISSING}
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
    if not why and params.get("env"):
        result["env"] = read_env(module, params["env"])
    return {**result, "head": head, "current": not why, "why": why}
