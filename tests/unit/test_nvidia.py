"""Unit tests for filter_plugins/nvidia.py (samples in tests/unit/data/nvidia/)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

_ROOT = Path(__file__).resolve().parents[2]
_PLUGIN = _ROOT / "filter_plugins" / "nvidia.py"
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


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("nvidia_filters", _PLUGIN)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


nv = _load()


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
    assert [(gpu["index"], gpu["memory_used_mib"], gpu["utilization_gpu_pct"]) for gpu in busy] == [(3, 73919, 97)]
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


@pytest.mark.parametrize("name", ["smi_error_no_driver.txt", "smi_error_version_mismatch.txt", "smi_error_no_devices.txt"])
def test_error_output_is_never_zero_gpus(name: str) -> None:
    with pytest.raises(nv.NvidiaFilterError, match="nvidia-smi reported no GPU"):
        nv.nvidia_smi_gpus(sample(name), FIELDS)


def test_partial_output_keeps_healthy_gpus() -> None:
    parsed = nv.nvidia_smi_parse(sample("smi_partial_gpu_lost.csv"), FIELDS)
    assert [gpu["index"] for gpu in parsed["gpus"]] == [0, 2]
    assert parsed["errors"] == ["Unable to determine the device handle for gpu 0000:43:00.0: Unknown Error"]
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
    import yaml

    role_vars = yaml.safe_load((_ROOT / "roles/nvidia_driver/vars/main.yml").read_text(encoding="utf-8"))
    assert role_vars["__nvidia_driver_smi_fields"] == FIELDS == list(nv.DEFAULT_SMI_FIELDS)


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
    assert nv.nvidia_pci_devices(sample("sysfs_no_gpu_ci_vm.txt"), gpus_only=False) == []


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
    assert nv.nvidia_apt_candidates("foo:\n  Installed: (none)\n  Candidate: (none)\n") == {"foo": None}


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
    assert nv.nvidia_proc_version(sample("proc_version_proprietary.txt")) == "535.261.03"
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
    assert {"nvidia_pci_devices", "nvidia_smi_gpus", "nvidia_smi_parse", "nvidia_smi_error"} <= names
