# -*- coding: utf-8 -*-
# Copyright: cosyvoice-deploy maintainers
# Apache License 2.0
"""Reading what decides whether a Python environment must be (re)built: shared by python_env_state and by
git_checkout_state's `env` (the same read in the checkout's module run when the checkout is current)."""

from __future__ import annotations

import base64
import os

from ansible_collections.cosyvoice.deploy.plugins.module_utils.file_state import content_or_none

# The options of the read (python_env_state's, and git_checkout_state's `env` suboptions).
ENV_SPEC = {
    "requirements": {"type": "path", "required": True},
    "requirements_required": {"type": "bool", "default": True},
    "stamp": {"type": "path", "required": True},
    "uv": {"type": "path", "default": ""},
    "venv": {"type": "path", "required": True},
}


def uv_version(output: str) -> str:
    """'0.5.11' from `uv --version` output ('uv 0.5.11 (c9bb5d4 2024-12-18)'); '' when it is not uv's answer."""
    words = output.split()
    return words[1] if len(words) >= 2 and words[0] == "uv" else ""


def read_env(module, params: dict) -> dict:
    """requirements_content (base64, as slurp returns it; None when unreadable), stamp, uv_version,
    venv_exists. Fails the module when the requirements cannot be read and params say they are required."""
    requirements = content_or_none(params["requirements"])
    if requirements is None and params["requirements_required"]:
        module.fail_json(msg=f"Could not read {params['requirements']}: the checkout has no requirements file "
                             "(is cosyvoice_version a commit of FunAudioLLM/CosyVoice?).")
    stamp = content_or_none(params["stamp"])
    version = ""
    if params["uv"] and os.access(params["uv"], os.X_OK):
        rc, out, _ = module.run_command([params["uv"], "--version"])
        version = uv_version(out) if rc == 0 else ""
    return {
        "requirements_content": base64.b64encode(requirements).decode("ascii") if requirements is not None else None,
        "stamp": stamp.decode("utf-8", "replace").strip() if stamp is not None else "",
        "uv_version": version,
        "venv_exists": os.path.exists(os.path.join(params["venv"], "bin", "python")),
    }
