"""nvidia_distro: the Debian `distro` path with a (test-only) overridden GPU.

What a container can show: the apt components, the installed driver packages,
the nouveau blacklist, nvidia-persistenced enabled, no reboot. What it cannot:
a DKMS build or a loaded module (it runs the host's kernel) - checked to be
reported as such, not faked.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
import tests.lib  # noqa: E402,F401  (collection import path)
from ansible_collections.cosyvoice.deploy.plugins.filter import nvidia  # noqa: E402

PROJECT = Path(
    os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3])
)

# What molecule.yml asks for per Debian release: the archive's driver branch and
# the module flavour it can install (open is unsatisfiable on Debian 12).
BRANCHES = {"12": "535", "13": "550"}
FLAVOURS = {"12": "proprietary", "13": "open"}
MODULE_PACKAGE = {"proprietary": "nvidia-kernel-dkms", "open": "nvidia-open-kernel-dkms"}
DKMS_MODULE = {"proprietary": "nvidia-current", "open": "nvidia-current-open"}
COMMON_PACKAGES = ["firmware-nvidia-gsp", "nvidia-smi", "libcuda1", "libnvidia-cfg1", "nvidia-persistenced"]


@pytest.fixture(scope="module")
def release(host) -> tuple[str, str, str]:
    """(codename, driver branch of the Debian archive, kernel-module flavour) of the target."""
    info = dict(
        line.split("=", 1)
        for line in host.file("/etc/os-release").content_string.splitlines()
        if "=" in line
    )
    version = info["VERSION_ID"].strip('"')
    return info["VERSION_CODENAME"], BRANCHES[version], FLAVOURS[version]




def test_apt_components_enabled(host, release) -> None:
    codename = release[0]
    sources = host.file("/etc/apt/sources.list").content_string
    assert f"{codename} main contrib non-free non-free-firmware" in sources
    policy = host.check_output("apt-cache policy")
    for component in ("contrib", "non-free", "non-free-firmware"):
        assert f"n={codename},l=Debian,c={component}," in policy, component


@pytest.mark.parametrize("name", ["module", *COMMON_PACKAGES])
def test_driver_package_installed_on_branch(host, release, name: str) -> None:
    package = host.package(MODULE_PACKAGE[release[2]] if name == "module" else name)
    assert package.is_installed
    assert package.version.startswith(release[1] + "."), package.version


def test_only_the_chosen_module_flavour_installed(host, release) -> None:
    other = "open" if release[2] == "proprietary" else "proprietary"
    assert not host.package(MODULE_PACKAGE[other]).is_installed


def test_headless_no_x11_and_no_host_kernel_headers(host) -> None:
    installed = host.check_output(
        "dpkg-query -W -f='${Package} ${Status}\\n' | grep ' installed$' | cut -d' ' -f1"
    ).split()
    assert "xserver-xorg-video-nvidia" not in installed
    assert "nvidia-driver" not in installed
    assert not [name for name in installed if name.startswith("linux-headers")]


def test_dkms_registered_but_nothing_built(host, release) -> None:
    """The honest container outcome: module source added to DKMS, no build for the host kernel."""
    status = host.check_output("dkms status")
    assert f"{DKMS_MODULE[release[2]]}/{release[1]}." in status
    assert "added" in status
    assert "installed" not in status


def test_nouveau_blacklisted(host) -> None:
    conf = host.file("/etc/modprobe.d/blacklist-nouveau.conf")
    assert conf.exists
    assert conf.user == "root"
    assert conf.mode == 0o644
    lines = conf.content_string.splitlines()
    assert "blacklist nouveau" in lines
    assert "options nouveau modeset=0" in lines


def test_persistenced_enabled(host) -> None:
    assert host.service("nvidia-persistenced").is_enabled


def test_not_rebooted(host) -> None:
    """prepare.yml left a marker on /run (tmpfs): a reboot would have wiped it."""
    assert host.file("/run/nvidia-distro-boot-marker").exists


def test_real_nvidia_smi_error_is_classified(host) -> None:
    """The installed nvidia-smi, without a kernel module, gives the error the role classifies."""
    result = host.run("nvidia-smi --query-gpu=index,name --format=csv,noheader,nounits")
    assert result.rc != 0
    error = nvidia.nvidia_smi_error(result.stdout + result.stderr)
    assert error is not None and error["kind"] == "no_driver", (
        result.stdout + result.stderr
    )


def run_load_step() -> subprocess.CompletedProcess[str]:
    """The role's load step (tasks/load.yml) from the controller, as on a real host."""
    inventory = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
    playbook = Path(__file__).resolve().parents[1] / "load_step.yml"
    return subprocess.run(
        [
            str(Path(sys.executable).with_name("ansible-playbook")),
            "-i",
            str(inventory),
            str(playbook),
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ, ANSIBLE_NOCOLOR="1"),
        timeout=300,
        check=False,
    )


def test_load_step_without_a_built_module_says_why(host) -> None:
    """Debian's renamed module files are looked up; none exists (no DKMS build) -> clear stop."""
    result = run_load_step()
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert "No nvidia kernel module exists for the running kernel" in out, out
    assert "no module named nvidia or nvidia-current-open or nvidia-current" in out, out
    assert "dkms status" in out, out
    assert host.file("/run/nvidia-distro-boot-marker").exists


def test_load_step_reports_a_module_that_does_not_load(host, release) -> None:
    """With a module 'installed' (fake modinfo) but unloadable, modprobe's error is reported."""
    fake = "/usr/local/sbin/modinfo"
    host.run(f"printf '#!/bin/sh\\necho 535.261.03\\n' > {fake} && chmod 755 {fake}")
    try:
        result = run_load_step()
    finally:
        host.run(f"rm -f {fake}")
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert "modprobe nvidia failed" in out, out
    assert f"Module {DKMS_MODULE[release[2]]} not found" in out, out
    assert "dmesg" in out, out
    assert host.file("/run/nvidia-distro-boot-marker").exists
    assert not host.file(fake).exists
