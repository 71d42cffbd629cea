"""Filters for CosyVoice's Python environment: which requirements, which interpreter, which command.

Upstream's requirements.txt (FunAudioLLM/CosyVoice) carries its own package
indexes and a few Linux-only packages that some hosts cannot install
(tensorrt-cu12* are placeholders on PyPI that download from pypi.nvidia.com at
build time). The role installs a filtered copy instead of the file itself:

    {{ upstream_text | cosyvoice_requirements(exclude=['tensorrt-cu12']) }}

and builds the install command for uv or pip in one place, so the build
constraint (setuptools<82: openai-whisper's setup.py imports pkg_resources)
reaches the isolated builds of both installers.
"""

from __future__ import annotations

import re
from typing import Any

try:  # an Ansible error shows as a clean task failure; plain ValueError outside Ansible
    from ansible.errors import AnsibleFilterError as _Base
except ImportError:  # pragma: no cover
    _Base = ValueError  # type: ignore[misc,assignment]


class PythonEnvError(_Base):  # type: ignore[valid-type,misc]
    """Invalid input; the message names the variable to fix."""


# Requirement-file options that choose where packages come from. The role sets
# indexes from its own variables (cosyvoice_pip_index_url, ..._extra_index_urls,
# cosyvoice_torch_index_url, cosyvoice_onnxruntime_index_url, wheelhouse).
_INDEX_OPTIONS = ("-i", "--index-url", "--extra-index-url", "-f", "--find-links", "--trusted-host", "--no-index")
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def normalize_name(name: str) -> str:
    """PEP 503: 'TensorRT_cu12.libs' -> 'tensorrt-cu12-libs'."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(line: str) -> str | None:
    """The normalised project name a requirements line asks for, or None (comment, option, blank)."""
    body = line.split("#", 1)[0].strip() if not line.lstrip().startswith("#") else ""
    if not body or body.startswith("-"):
        return None
    m = _NAME.match(body)
    return normalize_name(m.group(1)) if m else None


def filter_requirements(text: str, exclude: list[str] | None = None) -> str:
    """Upstream's requirements without its index options and without the excluded projects.

    Every other line is kept as it is (pins, environment markers). Excluding a name that the
    file does not list is an error: a typo would otherwise install what the operator dropped.
    """
    wanted_out = {normalize_name(n) for n in (exclude or [])}
    listed: set[str] = set()
    kept: list[str] = []
    for line in str(text).splitlines():
        stripped = line.strip()
        if stripped.startswith(_INDEX_OPTIONS):
            opt = stripped.split()[0].split("=", 1)[0]
            kept.append(f"# (index option {opt} set by the cosyvoice role's variables instead)")
            continue
        name = requirement_name(line)
        if name is not None:
            listed.add(name)
            if name in wanted_out:
                kept.append(f"# (excluded by cosyvoice_requirements_exclude) {stripped}")
                continue
        kept.append(line.rstrip())
    unknown = sorted(wanted_out - listed)
    if unknown:
        raise PythonEnvError(
            f"cosyvoice_requirements_exclude names {', '.join(unknown)}, which CosyVoice's requirements.txt "
            f"does not list (listed: {', '.join(sorted(listed))}). Fix the names or remove them."
        )
    return "\n".join(kept) + "\n"


def python_version_problem(version: Any, supported: list[str], variable: str = "cosyvoice_python") -> str:
    """'' when `version` ('3.11', '3.11.2', 'Python 3.11.2') is a supported minor version, else the reason."""
    m = re.search(r"(\d+)\.(\d+)", str(version or ""))
    if not m:
        return f"{variable}: cannot tell the Python version from {version!r}"
    minor = f"{m.group(1)}.{m.group(2)}"
    if minor in [str(s) for s in supported]:
        return ""
    return (
        f"{variable} is Python {minor}; CosyVoice's pinned requirements install only on Python "
        f"{' or '.join(str(s) for s in supported)} (grpcio==1.57.0 has no wheel for 3.12+ and its source "
        f"does not build there). Set {variable} to \"3.10\" (uv downloads it) or to the path of a 3.10/3.11 "
        f"interpreter on the host, e.g. /usr/bin/python3.10."
    )


def install_command(
    installer: str,
    venv: str,
    requirement_files: list[str],
    constraints_file: str = "",
    uv: str = "uv",
    index_args: list[str] | None = None,
) -> list[str]:
    """argv that installs the requirement files into the venv.

    The constraints file applies to the environment (-c) and to the isolated build
    environments of source distributions: uv's --build-constraint; for pip the same
    file is also passed through PIP_CONSTRAINT / PIP_BUILD_CONSTRAINT (see
    install_environment), which pip hands on to its build subprocesses.
    """
    if installer == "uv":
        cmd = [uv, "pip", "install", "--compile-bytecode", "--python", f"{venv}/bin/python"]
    elif installer == "pip":
        cmd = [f"{venv}/bin/python", "-m", "pip", "install", "--compile"]
    else:
        raise PythonEnvError(f"cosyvoice_installer={installer!r}: use uv or pip")
    for f in requirement_files:
        cmd += ["-r", f]
    if constraints_file:
        cmd += ["-c", constraints_file]
        if installer == "uv":
            cmd += ["--build-constraint", constraints_file]
    return cmd + list(index_args or [])


def install_environment(installer: str, constraints_file: str = "") -> dict[str, str]:
    """Environment for the install: how pip's build subprocesses get the build constraint."""
    if installer == "pip" and constraints_file:
        # pip < 25.3 passes PIP_CONSTRAINT to build environments; newer pip reads PIP_BUILD_CONSTRAINT.
        return {"PIP_CONSTRAINT": constraints_file, "PIP_BUILD_CONSTRAINT": constraints_file}
    return {}


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "cosyvoice_requirements": filter_requirements,
            "cosyvoice_python_version_problem": python_version_problem,
            "cosyvoice_install_command": install_command,
            "cosyvoice_install_environment": install_environment,
        }
