"""CosyVoice's Python environment: requirements filtering, interpreter check, install command.

Each test pins a defect seen on the real install path (issue: the real CosyVoice3 path):
openai-whisper's sdist needs setuptools<82 in its *build* environment, lightning needs
pkg_resources at runtime, grpcio==1.57.0 has no wheel for Python 3.12+.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from ansible_collections.cosyvoice.deploy.plugins.filter.cosyvoice_python import (
    PythonEnvError,
    filter_requirements,
    install_command,
    install_environment,
    normalize_name,
    python_version_problem,
    requirement_name,
)

from tests.lib.upstream import PINNED, upstream_dir

ROOT = Path(__file__).resolve().parents[2]
UPSTREAM = upstream_dir()

# The head of upstream's requirements.txt at the pinned commit (its shape matters here).
UPSTREAM_EXCERPT = """\
--extra-index-url https://download.pytorch.org/whl/cu121
--extra-index-url https://aiinfra.pkgs.visualstudio.com/PublicPackages/_packaging/onnxruntime-cuda-12/pypi/simple/ # https://github.com/microsoft/onnxruntime/issues/21684
conformer==0.3.2
deepspeed==0.15.1; sys_platform == 'linux'
onnxruntime-gpu==1.18.0; sys_platform == 'linux'
onnxruntime==1.18.0; sys_platform == 'darwin' or sys_platform == 'win32'
openai-whisper==20231117
tensorrt-cu12==10.13.3.9; sys_platform == 'linux'
tensorrt-cu12-bindings==10.13.3.9; sys_platform == 'linux'
tensorrt-cu12-libs==10.13.3.9; sys_platform == 'linux'
torch==2.3.1
"""


def test_names_are_normalised():
    assert normalize_name("TensorRT_cu12.libs") == "tensorrt-cu12-libs"
    assert requirement_name("deepspeed==0.15.1; sys_platform == 'linux'") == "deepspeed"
    assert requirement_name("HyperPyYAML==1.2.3") == "hyperpyyaml"
    assert requirement_name("# a comment") is None
    assert requirement_name("--extra-index-url https://x") is None
    assert requirement_name("") is None


def test_index_lines_are_dropped_and_everything_else_kept():
    out = filter_requirements(UPSTREAM_EXCERPT)
    assert "--extra-index-url" not in out.replace("# (index option --extra-index-url", "")
    for line in UPSTREAM_EXCERPT.splitlines()[2:]:
        assert line in out.splitlines()


def test_excluded_projects_are_commented_out_with_the_reason():
    out = filter_requirements(UPSTREAM_EXCERPT, exclude=["tensorrt-cu12", "TensorRT_cu12-bindings", "tensorrt-cu12-libs"])
    active = [line for line in out.splitlines() if line and not line.startswith("#")]
    assert not [line for line in active if line.startswith("tensorrt")]
    assert "torch==2.3.1" in active
    assert "# (excluded by cosyvoice_requirements_exclude) tensorrt-cu12==10.13.3.9; sys_platform == 'linux'" in out


def test_excluding_a_name_that_is_not_listed_fails_naming_the_variable():
    with pytest.raises(PythonEnvError, match="cosyvoice_requirements_exclude names tensorrt"):
        filter_requirements("torch==2.3.1\n", exclude=["tensorrt"])


@pytest.mark.skipif(UPSTREAM is None, reason="upstream bundles not found (COSYVOICE_UPSTREAM_DIR)")
def test_the_real_pinned_requirements_filter_cleanly(tmp_path):
    repo = tmp_path / "cv"
    subprocess.run(["git", "clone", "-q", "--no-checkout", str(UPSTREAM / "CosyVoice.bundle"), str(repo)], check=True)
    text = subprocess.run(["git", "-C", str(repo), "show", f"{PINNED}:requirements.txt"],
                          check=True, capture_output=True, text=True).stdout
    out = filter_requirements(text, exclude=["tensorrt-cu12", "tensorrt-cu12-bindings", "tensorrt-cu12-libs"])
    active = {requirement_name(line) for line in out.splitlines()} - {None}
    assert {"openai-whisper", "lightning", "grpcio", "torch", "wetext", "modelscope"} <= active
    assert not any(line.lstrip().startswith("--") for line in out.splitlines())


@pytest.mark.parametrize("version", ["3.10", "3.11", "3.11.2", "Python 3.10.13"])
def test_supported_interpreters(version):
    assert python_version_problem(version, ["3.10", "3.11"]) == ""


@pytest.mark.parametrize("version", ["3.12", "3.13.1", "3.9"])
def test_other_interpreters_are_refused_naming_the_variable(version):
    problem = python_version_problem(version, ["3.10", "3.11"])
    assert problem.startswith("cosyvoice_python is Python 3.")
    assert "grpcio==1.57.0" in problem and '"3.10"' in problem


def test_unreadable_version():
    assert "cannot tell" in python_version_problem("", ["3.10"])


def test_uv_gets_the_constraint_for_the_env_and_for_builds():
    cmd = install_command("uv", "/opt/cv/venv", ["/opt/cv/requirements/cosyvoice.txt", "/opt/cv/launcher/requirements.txt"],
                          constraints_file="/opt/cv/requirements/constraints.txt", uv="/opt/cv/tools/bin/uv",
                          index_args=["--index-url", "https://pypi.org/simple"])
    assert cmd[:6] == ["/opt/cv/tools/bin/uv", "pip", "install", "--compile-bytecode", "--python", "/opt/cv/venv/bin/python"]
    assert cmd[cmd.index("-c") + 1] == "/opt/cv/requirements/constraints.txt"
    assert cmd[cmd.index("--build-constraint") + 1] == "/opt/cv/requirements/constraints.txt"
    assert cmd[-2:] == ["--index-url", "https://pypi.org/simple"]
    assert install_environment("uv", "/c.txt") == {}


def test_pip_gets_the_constraint_for_the_env_and_through_the_environment_for_builds():
    cmd = install_command("pip", "/v", ["/r.txt"], constraints_file="/c.txt")
    assert cmd == ["/v/bin/python", "-m", "pip", "install", "--compile", "-r", "/r.txt", "-c", "/c.txt"]
    assert install_environment("pip", "/c.txt") == {"PIP_CONSTRAINT": "/c.txt", "PIP_BUILD_CONSTRAINT": "/c.txt"}


def test_unknown_installer():
    with pytest.raises(PythonEnvError, match="cosyvoice_installer"):
        install_command("conda", "/v", [])


def test_role_defaults_carry_the_setuptools_pin_for_builds_and_runtime():
    import yaml

    defaults = yaml.safe_load((ROOT / "roles/cosyvoice/defaults/main.yml").read_text())
    assert "setuptools<82" in defaults["cosyvoice_pip_constraints"]
    launcher_reqs = (ROOT / "roles/cosyvoice/files/launcher/requirements.txt").read_text().splitlines()
    assert "setuptools>=69,<82" in launcher_reqs  # runtime: lightning imports pkg_resources
    vars_main = yaml.safe_load((ROOT / "roles/cosyvoice/vars/main.yml").read_text())
    assert vars_main["__cosyvoice_python_supported"] == ["3.10", "3.11"]


def test_required_model_files_cover_what_the_loader_opens():
    import yaml

    files = yaml.safe_load((ROOT / "roles/cosyvoice/defaults/main.yml").read_text())["cosyvoice_model_required_files"]
    for name in ("cosyvoice3.yaml", "llm.pt", "flow.pt", "hift.pt", "campplus.onnx", "speech_tokenizer_v3.onnx",
                 "CosyVoice-BlankEN/config.json", "CosyVoice-BlankEN/model.safetensors",
                 "CosyVoice-BlankEN/tokenizer_config.json", "CosyVoice-BlankEN/vocab.json",
                 "CosyVoice-BlankEN/merges.txt"):
        assert name in files
