"""nvidia_nogpu: a host without an NVIDIA GPU is detected, reported and left untouched.

Besides looking at the host, the negative and dry-run cases run the layer's
playbook from the controller against the molecule inventory (cheaper than a
scenario per case, see docs/CONVENTIONS.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

PROJECT = Path(
    os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3])
)
PLAYBOOK = PROJECT / "playbooks" / "nvidia_driver.yml"
# Debian release -> (driver branch of its archive, CUDA repo directory, key file)
RELEASES = {
    "12": ("535", "debian12", "3bf863cc.pub"),
    "13": ("550", "debian13", "8793F200.pub"),
}
H100_LSPCI = "0000:1b:00.0 3D controller [0302]: NVIDIA Corporation GH100 [H100 SXM5 80GB] [10de:2330] (rev a1)"


def run_play(*args: str) -> subprocess.CompletedProcess[str]:
    """ansible-playbook from the controller, configured as molecule's own converge."""
    inventory = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
    playbook_bin = Path(sys.executable).with_name("ansible-playbook")
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    return subprocess.run(
        [str(playbook_bin), "-i", str(inventory), str(PLAYBOOK), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )


@pytest.fixture(scope="module")
def release(host) -> dict[str, str]:
    info = dict(
        line.split("=", 1)
        for line in host.file("/etc/os-release").content_string.splitlines()
        if "=" in line
    )
    version = info["VERSION_ID"].strip('"')
    branch, cuda_distro, key_file = RELEASES[version]
    return {
        "codename": info["VERSION_CODENAME"],
        "version": version,
        "branch": branch,
        "cuda_distro": cuda_distro,
        "key_file": key_file,
        # The module flavour the distro archive can install (open is unsatisfiable on 12).
        "modules": "proprietary" if version == "12" else "open",
    }


def assert_untouched(host) -> None:
    before = host.file("/root/nvidia-nogpu-packages.before").content_string.split()
    now = host.check_output("dpkg-query -W -f='${Package}\\n' | sort").split()
    assert (
        now == before
    ), f"packages changed: +{sorted(set(now) - set(before))} -{sorted(set(before) - set(now))}"
    assert not [p for p in now if "nvidia" in p or p.startswith("linux-headers")]
    assert (
        host.file("/etc/apt/sources.list").content_string
        == host.file("/root/nvidia-nogpu-sources.list.before").content_string
    )
    assert "non-free" not in host.file("/etc/apt/sources.list").content_string
    for path in (
        "/etc/modprobe.d/blacklist-nouveau.conf",
        "/etc/apt/sources.list.d/nvidia-cuda.sources",
        "/etc/apt/keyrings/nvidia-cuda.asc",
        "/etc/apt/sources.list.d/nvidia-container-toolkit.sources",
    ):
        assert not host.file(path).exists, path


def test_ci_host_has_no_nvidia_gpu(host) -> None:
    """Precondition of the scenario: the real PCI scan finds no NVIDIA display device."""
    scan = host.check_output(
        "for d in /sys/bus/pci/devices/*; do [ -r $d/vendor ] && echo $(cat $d/vendor) $(cat $d/class); done; true"
    )
    assert not [line for line in scan.splitlines() if line.startswith("0x10de 0x03")]


def test_nothing_installed_or_configured(host) -> None:
    assert_untouched(host)


def test_required_gpu_fails_with_a_clear_message(host) -> None:
    result = run_play("-e", "nvidia_driver_required=true")
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert "nvidia_driver_required is true but" in out, out
    assert "has no NVIDIA GPU on its PCI bus" in out, out
    assert "failed=1" in out, out
    assert_untouched(host)


def test_gpu_path_in_check_mode_changes_nothing(host, release) -> None:
    """With a (test-only) fake GPU, --check --diff walks the distro path and must not change the host."""
    extra = {
        "nvidia_driver_detect_override": [H100_LSPCI],
        "nvidia_driver_source": "distro",
        "nvidia_driver_branch": release["branch"],
        "nvidia_driver_kernel_modules": release["modules"],
    }
    result = run_play("--check", "--diff", "-e", json.dumps(extra))
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "1 NVIDIA GPU(s) [GH100 [H100 SXM5 80GB]]" in out, out
    # the diff shows the components that would be enabled, the host keeps its sources
    assert f"{release['codename']} main contrib" in out, out
    assert "configured only on paper" in out, out
    assert_untouched(host)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {"nvidia_driver_branch": "58"},
            "nvidia_driver_branch must be a driver branch",
        ),
        (
            {
                "nvidia_driver_detect_override": [H100_LSPCI],
                "nvidia_driver_source": "distro",
            },
            "its archive ships only branch {branch}",
        ),
    ],
)
def test_bad_input_is_refused_before_any_change(
    host, release, extra: dict, message: str
) -> None:
    message = message.format(branch=release["branch"])
    result = run_play("--check", "-e", json.dumps(extra))
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert message in out, out
    assert_untouched(host)


# --- cuda_repo path against a fake repository on the container's loopback ---------
# NVIDIA's servers are unreachable from CI; a signed flat repository served on
# 127.0.0.1 inside the container exercises the real key download, fingerprint
# gate, deb822 Signed-By and the "branch not packaged" check.

FAKE_PORT = 8765
FAKE_REPO_SETUP = r"""
set -eu
export GNUPGHOME=/root/fakecuda-gnupg
rm -rf "$GNUPGHOME" /srv/fakecuda && mkdir -p -m 700 "$GNUPGHOME"
gpg --batch --quiet --passphrase '' --pinentry-mode loopback \
    --quick-gen-key 'Fake CUDA repo <ci@example.invalid>' rsa2048 sign never
repo=/srv/fakecuda/CUDA_DISTRO/x86_64 && mkdir -p "$repo" && cd "$repo"
: > Packages
{ echo "Origin: fake"; echo "Label: fake"; echo "Date: $(date -Ru)"; echo "SHA256:";
  echo " $(sha256sum Packages | cut -d' ' -f1) $(stat -c %s Packages) Packages"; } > Release
gpg --batch --yes --quiet --clearsign -o InRelease Release
gpg --batch --armor --export > KEY_FILE
setsid python3 -m http.server --bind 127.0.0.1 --directory /srv/fakecuda PORT >/dev/null 2>&1 < /dev/null &
echo $! > /root/fakecuda.pid
for _ in $(seq 50); do python3 -c 'import urllib.request; urllib.request.urlopen("http://127.0.0.1:PORT/")' 2>/dev/null && break; sleep 0.2; done
gpg --with-colons --list-keys | awk -F: '/^fpr/ {print $10; exit}'
""".replace("PORT", str(FAKE_PORT))
CUDA_FILES = (
    "/etc/apt/keyrings/nvidia-cuda.asc",
    "/etc/apt/sources.list.d/nvidia-cuda.sources",
    "/etc/apt/preferences.d/nvidia-cuda.pref",
)


@pytest.fixture(scope="module")
def fake_cuda_repo(host, release) -> Iterator[str]:
    setup = FAKE_REPO_SETUP.replace("CUDA_DISTRO", release["cuda_distro"])
    fingerprint = host.check_output(setup.replace("KEY_FILE", release["key_file"]))
    fingerprint = fingerprint.strip().splitlines()[-1]
    assert len(fingerprint) == 40, fingerprint
    yield fingerprint
    host.run(
        "kill $(cat /root/fakecuda.pid); "
        "rm -rf /srv/fakecuda /root/fakecuda-gnupg /root/fakecuda.pid /var/lib/apt/lists/127.0.0.1* "
        + " ".join(CUDA_FILES)
    )


def cuda_repo_play(fingerprint: str) -> subprocess.CompletedProcess[str]:
    extra = {
        "nvidia_driver_detect_override": [H100_LSPCI],
        "nvidia_driver_source": "cuda_repo",
        "nvidia_driver_cuda_repo_base_url": f"http://127.0.0.1:{FAKE_PORT}",
        "nvidia_driver_cuda_repo_key_fingerprint": fingerprint,
    }
    return run_play("-e", json.dumps(extra))


def test_cuda_repo_key_with_wrong_fingerprint_is_refused(
    host, fake_cuda_repo: str
) -> None:
    result = cuda_repo_play("0" * 40)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert f"has fingerprint(s) {fake_cuda_repo}" in out, out
    assert "set nvidia_driver_cuda_repo_key_fingerprint" in out, out
    for path in CUDA_FILES:
        assert not host.file(path).exists, path
    assert_untouched(host)


def test_cuda_repo_branch_not_packaged_fails_clearly(
    host, release, fake_cuda_repo: str
) -> None:
    """Right key: apt trusts the repository (Signed-By file + fingerprint), the missing branch is named."""
    result = cuda_repo_play(fake_cuda_repo)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert (
        "Not available from cuda_repo: nvidia-driver-pinning-580, nvidia-driver-cuda, nvidia-kernel-open-dkms"
        in out
    ), out
    assert "Choose a packaged nvidia_driver_branch" in out, out
    sources = host.file("/etc/apt/sources.list.d/nvidia-cuda.sources").content_string
    assert (
        f"URIs: http://127.0.0.1:{FAKE_PORT}/{release['cuda_distro']}/x86_64/"
        in sources
    )
    assert f"Signed-By: /etc/apt/keyrings/nvidia-cuda.asc {fake_cuda_repo}" in sources
    assert (
        "Pin: origin 127.0.0.1"
        in host.file("/etc/apt/preferences.d/nvidia-cuda.pref").content_string
    )
    # apt keeps the lists of a repository only once its InRelease signature verified
    lists = host.check_output("ls /var/lib/apt/lists").split()
    assert [
        name
        for name in lists
        if name.startswith(f"127.0.0.1:{FAKE_PORT}_{release['cuda_distro']}_")
        and name.endswith("_InRelease")
    ]
    # nothing beyond the repository definition was installed
    packages = host.check_output("dpkg-query -W -f='${Package}\\n'").split()
    assert not [p for p in packages if "nvidia" in p]
    assert not host.file("/etc/modprobe.d/blacklist-nouveau.conf").exists


def test_debian12_distro_open_modules_refused_in_preflight(host, release) -> None:
    """nvidia-open-kernel-dkms on Debian 12 cannot be installed (GSP firmware version skew)."""
    if release["version"] != "12":
        pytest.skip("Debian 12 only")
    extra = {
        "nvidia_driver_detect_override": [H100_LSPCI],
        "nvidia_driver_source": "distro",
        "nvidia_driver_branch": release["branch"],
        "nvidia_driver_kernel_modules": "open",
    }
    result = run_play("--check", "-e", json.dumps(extra))
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert "nvidia-open-kernel-dkms stays at 535.261.03" in out, out
    assert "Set nvidia_driver_kernel_modules=proprietary" in out, out
    assert "changed=0" in out, out  # refused in validation, before any task that changes the host
