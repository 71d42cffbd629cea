"""Unit tests for filter_plugins/nvidia.py (samples in tests/unit/data/nvidia/) and for
the repository files roles/nvidia_driver renders for each supported distribution."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

_ROOT = Path(__file__).resolve().parents[2]
_DATA = Path(__file__).resolve().parent / "data" / "nvidia"

# What roles/nvidia_driver/vars/main.yml queries (kept in step by test_role_queries_default_fields).
FIELDS = [
    "index",
    "uuid",
    "name",
    "pci.bus_id",
    "driver_version",
    "memory.total",
    "memory.used",
    "memory.free",
    "temperature.gpu",
    "utilization.gpu",
    "persistence_mode",
]


from ansible_collections.cosyvoice.deploy.plugins.filter import nvidia as nv  # noqa: E402


def sample(name: str) -> str:
    return (_DATA / name).read_text(encoding="utf-8")


# --- nvidia-smi -------------------------------------------------------------


def test_one_gpu() -> None:
    gpus = nv.nvidia_smi_gpus(sample("smi_1gpu_a10g.csv"), FIELDS)
    assert gpus == [
        {
            "index": 0,
            "uuid": "GPU-6d3b7a4e-19c2-8f4e-0b7d-5e2a91c3f8d0",
            "name": "NVIDIA A10G",
            "pci_bus_id": "0000:00:1e.0",
            "driver_version": "535.183.01",
            "memory_total_mib": 23028,
            "memory_used_mib": 1,
            "memory_free_mib": 22515,
            "temperature_gpu_c": 24,
            "utilization_gpu_pct": 0,
            "persistence_mode": True,
        }
    ]


def test_eight_h100() -> None:
    gpus = nv.nvidia_smi_gpus(sample("smi_8gpu_h100.csv"), FIELDS)
    assert [gpu["index"] for gpu in gpus] == list(range(8))
    assert {gpu["name"] for gpu in gpus} == {"NVIDIA H100 80GB HBM3"}
    assert {gpu["driver_version"] for gpu in gpus} == {"550.90.07"}
    assert all(gpu["memory_total_mib"] == 81559 for gpu in gpus)
    busy = [gpu for gpu in gpus if gpu["memory_used_mib"] > 0]
    assert [
        (gpu["index"], gpu["memory_used_mib"], gpu["utilization_gpu_pct"])
        for gpu in busy
    ] == [(3, 73919, 97)]
    assert gpus[7]["pci_bus_id"] == "0000:df:00.0"
    assert len({gpu["uuid"] for gpu in gpus}) == 8


def test_bus_ids_match_pci_detection() -> None:
    """pci_bus_id uses the lspci/sysfs slot form, so the two sources can be joined."""
    gpus = nv.nvidia_smi_gpus(sample("smi_8gpu_h100.csv"), FIELDS)
    pci = nv.nvidia_pci_devices(sample("lspci_dgx_h100.txt"))
    assert [gpu["pci_bus_id"] for gpu in gpus] == [dev["slot"] for dev in pci]


def test_not_available_values_are_none() -> None:
    (gpu,) = nv.nvidia_smi_gpus(sample("smi_1gpu_vgpu_na.csv"), FIELDS)
    assert gpu["name"] == "GRID A100-40C"
    assert gpu["temperature_gpu_c"] is None
    assert gpu["utilization_gpu_pct"] is None
    assert gpu["persistence_mode"] is None
    assert gpu["memory_used_mib"] == 3251


def test_default_fields_and_comma_string() -> None:
    text = sample("smi_1gpu_a10g.csv")
    assert nv.nvidia_smi_gpus(text) == nv.nvidia_smi_gpus(text, ",".join(FIELDS))


def test_custom_fields_for_a_watchdog() -> None:
    text = "0, 81559, 73919\n1, 81559, 0\n"
    gpus = nv.nvidia_smi_gpus(text, ["index", "memory.total", "memory.used"])
    assert gpus == [
        {"index": 0, "memory_total_mib": 81559, "memory_used_mib": 73919},
        {"index": 1, "memory_total_mib": 81559, "memory_used_mib": 0},
    ]


def test_unknown_field_gets_a_safe_key() -> None:
    (gpu,) = nv.nvidia_smi_gpus("0, 1.0", ["index", "clocks_throttle_reasons.active"])
    assert gpu == {"index": 0, "clocks_throttle_reasons_active": "1.0"}


@pytest.mark.parametrize(
    ("name", "kind", "reboot"),
    [
        ("smi_error_no_driver.txt", "no_driver", True),
        ("smi_error_version_mismatch.txt", "version_mismatch", True),
        ("smi_error_no_devices.txt", "no_devices", False),
    ],
)
def test_errors_are_classified(name: str, kind: str, reboot: bool) -> None:
    error = nv.nvidia_smi_error(sample(name))
    assert error is not None
    assert error["kind"] == kind
    assert error["reboot_required"] is reboot
    assert error["message"]
    parsed = nv.nvidia_smi_parse(sample(name), FIELDS)
    assert parsed["gpus"] == []
    assert parsed["error"]["kind"] == kind


def test_version_mismatch_says_reboot() -> None:
    error = nv.nvidia_smi_error(sample("smi_error_version_mismatch.txt"))
    assert "reboot" in error["message"]
    assert "NVML library version: 550.90" in error["output"]


@pytest.mark.parametrize(
    "name",
    [
        "smi_error_no_driver.txt",
        "smi_error_version_mismatch.txt",
        "smi_error_no_devices.txt",
    ],
)
def test_error_output_is_never_zero_gpus(name: str) -> None:
    with pytest.raises(nv.NvidiaFilterError, match="nvidia-smi reported no GPU"):
        nv.nvidia_smi_gpus(sample(name), FIELDS)


def test_partial_output_keeps_healthy_gpus() -> None:
    parsed = nv.nvidia_smi_parse(sample("smi_partial_gpu_lost.csv"), FIELDS)
    assert [gpu["index"] for gpu in parsed["gpus"]] == [0, 2]
    assert parsed["errors"] == [
        "Unable to determine the device handle for gpu 0000:43:00.0: Unknown Error"
    ]
    assert parsed["error"]["kind"] == "gpu_lost"
    assert len(nv.nvidia_smi_gpus(sample("smi_partial_gpu_lost.csv"), FIELDS)) == 2


def test_healthy_output_has_no_error() -> None:
    assert nv.nvidia_smi_error(sample("smi_8gpu_h100.csv")) is None
    assert nv.nvidia_smi_parse(sample("smi_8gpu_h100.csv"), FIELDS)["error"] is None


def test_empty_output() -> None:
    assert nv.nvidia_smi_gpus("", FIELDS) == []
    assert nv.nvidia_smi_gpus(None, FIELDS) == []
    with pytest.raises(nv.NvidiaFilterError):
        nv.nvidia_smi_parse("0", [])


def test_role_queries_default_fields() -> None:
    """The role's query list and the filter's default are the same list."""
    role_vars = yaml.safe_load(
        (_ROOT / "roles/nvidia_driver/vars/main.yml").read_text(encoding="utf-8")
    )
    assert (
        role_vars["__nvidia_driver_smi_fields"] == FIELDS == list(nv.DEFAULT_SMI_FIELDS)
    )


# --- PCI detection ----------------------------------------------------------


def test_dgx_h100_counts_gpus_not_nvswitches() -> None:
    gpus = nv.nvidia_pci_devices(sample("lspci_dgx_h100.txt"))
    assert len(gpus) == 8
    assert {gpu["device_id"] for gpu in gpus} == {"2330"}
    assert gpus[0] == {
        "slot": "0000:1b:00.0",
        "vendor_id": "10de",
        "device_id": "2330",
        "class_id": "0302",
        "class_name": "3D controller",
        "name": "GH100 [H100 SXM5 80GB]",
        "is_gpu": True,
    }
    every = nv.nvidia_pci_devices(sample("lspci_dgx_h100.txt"), gpus_only=False)
    assert len(every) == 12
    assert sum(1 for dev in every if dev["class_id"] == "0680") == 4


def test_workstation_without_domain_skips_audio_and_other_vendors() -> None:
    gpus = nv.nvidia_pci_devices(sample("lspci_workstation_rtx4090.txt"))
    assert [(gpu["slot"], gpu["name"], gpu["class_id"]) for gpu in gpus] == [
        ("0000:01:00.0", "AD102 [GeForce RTX 4090]", "0300")
    ]


def test_sysfs_dump() -> None:
    gpus = nv.nvidia_pci_devices(sample("sysfs_aws_g5.txt"))
    assert gpus == [
        {
            "slot": "0000:00:1e.0",
            "vendor_id": "10de",
            "device_id": "2237",
            "class_id": "0302",
            "class_name": "3D controller",
            "name": "",
            "is_gpu": True,
        }
    ]


def test_ci_vm_has_no_gpu() -> None:
    assert nv.nvidia_pci_devices(sample("sysfs_no_gpu_ci_vm.txt")) == []
    assert (
        nv.nvidia_pci_devices(sample("sysfs_no_gpu_ci_vm.txt"), gpus_only=False) == []
    )


def test_override_list_and_noise() -> None:
    lines = [
        "pcilib: Cannot open /proc/bus/pci",
        "0000:01:00.0 3D controller [0302]: NVIDIA Corporation GH100 [H100 PCIe] [10de:2331] (rev a1)",
        "01:00.0 3D controller: NVIDIA Corporation GH100 (rev a1)",  # lspci without -nn: ignored
    ]
    assert [gpu["device_id"] for gpu in nv.nvidia_pci_devices(lines)] == ["2331"]
    assert nv.nvidia_pci_devices([]) == []
    assert nv.nvidia_pci_devices(None) == []
    with pytest.raises(nv.NvidiaFilterError):
        nv.nvidia_pci_devices(42)


# --- small parsers ----------------------------------------------------------


def test_apt_candidates() -> None:
    candidates = nv.nvidia_apt_candidates(sample("apt_policy_bookworm.txt"))
    assert candidates == {
        "nvidia-open-kernel-dkms": "535.261.03-1",
        "nvidia-smi": "535.261.03-1",
        "linux-headers-amd64": "6.1.176-1",
        "nvidia-tesla-kernel-dkms": "525.147.05-15~deb12u1",
    }
    # the host kernel's headers and the CUDA-repo pinning package are unknown to Debian
    assert "linux-headers-6.18.44-fc-v669" not in candidates
    assert "nvidia-driver-pinning-580" not in candidates
    assert nv.nvidia_apt_candidates(
        "foo:\n  Installed: (none)\n  Candidate: (none)\n"
    ) == {"foo": None}


@pytest.mark.parametrize(
    ("kernel", "flavour"),
    [
        ("6.1.0-26-amd64", "amd64"),
        ("6.1.0-26-cloud-amd64", "cloud-amd64"),
        ("6.12.43+deb13-amd64", "amd64"),
        ("6.12.12+bpo-cloud-amd64", "cloud-amd64"),
        ("6.8.0-45-generic", "generic"),
        ("5.15.0-1063-aws", "aws"),
        ("6.8.0-1015-nvidia-64k", "nvidia-64k"),
        ("5.14.0-427.13.1.el9_4.x86_64", ""),
        ("6.18.44-fc-v669", ""),
        ("", ""),
    ],
)
def test_kernel_flavour(kernel: str, flavour: str) -> None:
    assert nv.nvidia_kernel_flavour(kernel) == flavour


def test_proc_version() -> None:
    assert nv.nvidia_proc_version(sample("proc_version_open.txt")) == "550.90.07"
    assert (
        nv.nvidia_proc_version(sample("proc_version_proprietary.txt")) == "535.261.03"
    )
    assert nv.nvidia_proc_version("") is None


@pytest.mark.parametrize(
    ("text", "state"),
    [
        ("SecureBoot enabled\n", "enabled"),
        ("SecureBoot disabled\nPlatform is in Setup Mode\n", "disabled"),
        ("This system doesn't support Secure Boot\n", "unsupported"),
        ("EFI variables are not supported on this system\n", "unsupported"),
        ("not booted with EFI\n", "unsupported"),
        ("", "unknown"),
    ],
)
def test_secure_boot_state(text: str, state: str) -> None:
    assert nv.nvidia_secure_boot_state(text) == state


def test_gpg_fingerprints_primary_only() -> None:
    assert nv.nvidia_gpg_fingerprints(sample("gpg_show_keys_debian_bookworm.txt")) == [
        "B8B80B5B623EAB6AD8775C45B7C5D7D6350947F8"
    ]
    assert nv.nvidia_gpg_fingerprints("") == []


def test_filter_module_exports() -> None:
    names = set(nv.FilterModule().filters())
    assert {
        "nvidia_pci_devices",
        "nvidia_smi_gpus",
        "nvidia_smi_parse",
        "nvidia_smi_error",
    } <= names


# --- repository files the role renders (cuda_repo, container toolkit) --------
# NVIDIA's repositories cannot be reached from CI, so the role's own file tasks
# (tasks/vars.yml, repo_cuda_files.yml, repo_container_toolkit_files.yml) run in
# check mode against local hosts with faked distribution facts; the rendered
# content comes from the --diff output (JSON callback). Nothing is written and
# nothing leaves the machine: those tasks only template files.

PLAYBOOK_BIN = Path(sys.executable).with_name("ansible-playbook")
NVIDIA_3BF863CC = "EB693B3035CD5710E231E123A4B469963BF863CC"
NVIDIA_D42D0685 = "610C7B14E068A878070DA4E99CD0A493D42D0685"
LIBNVIDIA_CONTAINER = "C95B321B61E88C1809C4F759DDCAE044F796ECB0"
CUDA = "https://developer.download.nvidia.com/compute/cuda/repos"


def _host(
    distribution: str, family: str, major: str, release: str, arch: str = "x86_64"
) -> dict[str, Any]:
    return {
        "fake": {
            "distribution": distribution,
            "os_family": family,
            "distribution_major_version": major,
            "distribution_version": major,
            "distribution_release": release,
            "architecture": arch,
            "kernel": (
                "6.8.0-45-generic"
                if family == "Debian"
                else "5.14.0-427.13.1.el9_4.x86_64"
            ),
        }
    }


HOSTS = {
    "ubuntu2204": _host("Ubuntu", "Debian", "22", "jammy"),
    "ubuntu2404": _host("Ubuntu", "Debian", "24", "noble"),
    "ubuntu2404_arm": _host("Ubuntu", "Debian", "24", "noble", "aarch64"),
    "debian12": _host("Debian", "Debian", "12", "bookworm"),
    "rhel9": _host("RedHat", "RedHat", "9", "Plow"),
    "rocky9": _host("Rocky", "RedHat", "9", "Blue Onyx"),
}

PLAY = """
- name: Render the nvidia_driver repository files with faked distribution facts
  hosts: all
  gather_facts: false
  vars:
    nvidia_driver_source: cuda_repo
    nvidia_driver_container_toolkit: true
  tasks:
    - name: Fake the distribution facts
      ansible.builtin.set_fact:
        ansible_distribution: "{{ fake.distribution }}"
        ansible_os_family: "{{ fake.os_family }}"
        ansible_distribution_major_version: "{{ fake.distribution_major_version }}"
        ansible_distribution_version: "{{ fake.distribution_version }}"
        ansible_distribution_release: "{{ fake.distribution_release }}"
        ansible_architecture: "{{ fake.architecture }}"
        ansible_kernel: "{{ fake.kernel }}"
        cacheable: true
    - name: Load the role's variables
      ansible.builtin.include_role:
        name: nvidia_driver
        tasks_from: vars
        public: true
    - name: Render the CUDA repository files
      ansible.builtin.include_role:
        name: nvidia_driver
        tasks_from: repo_cuda_files
    - name: Render the container toolkit repository file
      ansible.builtin.include_role:
        name: nvidia_driver
        tasks_from: repo_container_toolkit_files
    - name: Report the computed values
      ansible.builtin.debug:
        msg:
          pkg_mgr: "{{ __nvidia_driver_pkg_mgr }}"
          key_url: "{{ __nvidia_driver_cuda_repo_key_url }}"
          fingerprint: "{{ __nvidia_driver_cuda_repo_fingerprint }}"
          pin_packages: "{{ __nvidia_driver_pin_packages }}"
          packages: "{{ __nvidia_driver_packages }}"
          ctk_key_url: "{{ __nvidia_driver_ctk_key_url }}"
          yum_repo: "{{ __nvidia_driver_cuda_yum_repo }}"
          ctk_file: "{{ __nvidia_driver_ctk_apt_sources if __nvidia_driver_pkg_mgr == 'apt' else __nvidia_driver_ctk_yum_repo }}"
"""


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("nvidia_render")
    inventory = {
        "all": {
            "hosts": HOSTS,
            "vars": {
                "ansible_connection": "local",
                "ansible_python_interpreter": sys.executable,
            },
        }
    }
    (tmp / "inventory.yml").write_text(yaml.safe_dump(inventory), encoding="utf-8")
    (tmp / "play.yml").write_text(PLAY, encoding="utf-8")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("ANSIBLE_") and not key.startswith("MOLECULE_")
    }
    env.update(
        ANSIBLE_CONFIG=str(tmp / "none.cfg"),
        ANSIBLE_ROLES_PATH=str(_ROOT / "roles"),
        ANSIBLE_COLLECTIONS_PATH=str(_ROOT / "collections"),
        ANSIBLE_INJECT_FACT_VARS="false",
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
        ANSIBLE_LOCAL_TEMP=str(tmp / "local"),
        ANSIBLE_REMOTE_TEMP=str(tmp / "remote"),
        ANSIBLE_HOME=str(tmp / "home"),
        ANSIBLE_NOCOLOR="1",
    )
    (tmp / "none.cfg").write_text("[defaults]\n", encoding="utf-8")
    assert shutil.which(str(PLAYBOOK_BIN)), PLAYBOOK_BIN
    result = subprocess.run(
        [
            str(PLAYBOOK_BIN),
            "-i",
            str(tmp / "inventory.yml"),
            str(tmp / "play.yml"),
            "--check",
            "--diff",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    report = json.loads(result.stdout)
    files: dict[str, dict[str, Any]] = {
        name: {"files": {}, "values": {}} for name in HOSTS
    }
    for task in report["plays"][0]["tasks"]:
        for name, res in task["hosts"].items():
            for item in res.get("results", [res]):
                if item.get("skipped") or not item.get("diff"):
                    if "msg" in item and isinstance(item["msg"], dict):
                        files[name]["values"] = item["msg"]
                    continue
                # loop items carry their dest; single template tasks are keyed by their task name
                dest = (item.get("item") or {}).get("dest") or task["task"][
                    "name"
                ].split("| ", 1)[-1]
                diff = (
                    item["diff"][0] if isinstance(item["diff"], list) else item["diff"]
                )
                files[name]["files"][dest] = diff["after"]
    return files


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


@pytest.mark.parametrize(
    ("host", "distro", "arch", "deb_arch"),
    [
        ("ubuntu2204", "ubuntu2204", "x86_64", "amd64"),
        ("ubuntu2404", "ubuntu2404", "x86_64", "amd64"),
        ("ubuntu2404_arm", "ubuntu2404", "sbsa", "arm64"),
        ("debian12", "debian12", "x86_64", "amd64"),
    ],
)
def test_apt_cuda_repository(
    rendered: dict[str, Any], host: str, distro: str, arch: str, deb_arch: str
) -> None:
    files = rendered[host]["files"]
    assert _lines(files["/etc/apt/sources.list.d/nvidia-cuda.sources"]) == [
        "Types: deb",
        f"URIs: {CUDA}/{distro}/{arch}/",
        "Suites: /",
        f"Architectures: {deb_arch}",
        f"Signed-By: /etc/apt/keyrings/nvidia-cuda.asc {NVIDIA_3BF863CC}",
    ]
    assert _lines(files["/etc/apt/preferences.d/nvidia-cuda.pref"]) == [
        "Package: *",
        "Pin: origin developer.download.nvidia.com",
        "Pin-Priority: 600",
    ]
    values = rendered[host]["values"]
    assert values["key_url"] == f"{CUDA}/{distro}/{arch}/3bf863cc.pub"
    assert values["fingerprint"] == NVIDIA_3BF863CC
    assert values["pin_packages"] == ["nvidia-driver-pinning-580"]
    assert "Write the dnf repository" not in files


def test_apt_driver_packages(rendered: dict[str, Any]) -> None:
    assert rendered["ubuntu2204"]["values"]["packages"] == ["nvidia-open"]
    assert rendered["debian12"]["values"]["packages"] == [
        "nvidia-driver-cuda",
        "nvidia-kernel-open-dkms",
    ]


@pytest.mark.parametrize("host", ["rhel9", "rocky9"])
def test_dnf_cuda_repository(rendered: dict[str, Any], host: str) -> None:
    files = rendered[host]["files"]
    assert rendered[host]["values"]["yum_repo"] == "/etc/yum.repos.d/cuda-rhel9.repo"
    assert _lines(files["Write the dnf repository"]) == [
        "[cuda-rhel9-x86_64]",
        "name=NVIDIA CUDA rhel9 x86_64",
        f"baseurl={CUDA}/rhel9/x86_64",
        "enabled=1",
        "gpgcheck=1",
        "gpgkey=file:///etc/pki/rpm-gpg/RPM-GPG-KEY-nvidia-cuda",
    ]
    values = rendered[host]["values"]
    assert values["key_url"] == f"{CUDA}/rhel9/x86_64/D42D0685.pub"
    assert values["fingerprint"] == NVIDIA_D42D0685
    assert values["pin_packages"] == []
    assert values["packages"] == ["@nvidia-driver:580-open/default"]
    assert "Write the apt source and pin" not in files


def test_container_toolkit_repository(rendered: dict[str, Any]) -> None:
    assert (
        rendered["debian12"]["values"]["ctk_file"]
        == "/etc/apt/sources.list.d/nvidia-container-toolkit.sources"
    )
    assert (
        rendered["rhel9"]["values"]["ctk_file"]
        == "/etc/yum.repos.d/nvidia-container-toolkit.repo"
    )
    assert _lines(rendered["debian12"]["files"]["Write the repository definition"]) == [
        "Types: deb",
        "URIs: https://nvidia.github.io/libnvidia-container/stable/deb/amd64",
        "Suites: /",
        f"Signed-By: /etc/apt/keyrings/nvidia-container-toolkit.asc {LIBNVIDIA_CONTAINER}",
    ]
    repo = _lines(rendered["rhel9"]["files"]["Write the repository definition"])
    assert (
        "baseurl=https://nvidia.github.io/libnvidia-container/stable/rpm/$basearch"
        in repo
    )
    assert "repo_gpgcheck=1" in repo
    assert "gpgkey=file:///etc/pki/rpm-gpg/RPM-GPG-KEY-nvidia-container-toolkit" in repo
    assert (
        rendered["rhel9"]["values"]["ctk_key_url"]
        == "https://nvidia.github.io/libnvidia-container/gpgkey"
    )
