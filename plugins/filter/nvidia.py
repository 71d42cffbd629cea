"""Filters that turn NVIDIA-related command output into facts.

Used by the `nvidia_driver` role (detection, verification) and by any later
role that needs the GPU list (e.g. CUDA_VISIBLE_DEVICES, a memory watchdog):

    {{ pci_scan.stdout | nvidia_pci_devices }}              # lspci -Dnn / sysfs lines
    {{ smi.stdout | nvidia_smi_gpus(fields) }}              # nvidia-smi --query-gpu CSV
    {{ (smi.stdout ~ smi.stderr) | nvidia_smi_error }}      # None, or why nvidia-smi failed

Every parser is pure (text in, data out) so it is unit-tested with real
command output in tests/unit/test_nvidia.py.
"""

from __future__ import annotations

import csv
import re
from typing import Any, Iterable

try:  # an Ansible error shows as a clean task failure; plain ValueError outside Ansible
    from ansible.errors import AnsibleFilterError as _Base
except ImportError:  # pragma: no cover
    _Base = ValueError  # type: ignore[misc,assignment]


class NvidiaFilterError(_Base):  # type: ignore[valid-type,misc]
    """Input that cannot be parsed; the message says what was expected."""


NVIDIA_VENDOR_ID = "10de"

# PCI class codes (base class 0x03 = display controller). NVIDIA boards also
# expose audio (0x0403), USB-C (0x0c03) and NVSwitch bridge (0x0680) functions:
# those are not GPUs and must not be counted.
_PCI_CLASS_NAMES = {
    "0300": "VGA compatible controller",
    "0301": "XGA compatible controller",
    "0302": "3D controller",
    "0380": "Display controller",
}

# `lspci -Dnn` (or `lspci -nn`, without the PCI domain):
#   0000:1b:00.0 3D controller [0302]: NVIDIA Corporation GH100 [H100 SXM5 80GB] [10de:2330] (rev a1)
_LSPCI_LINE = re.compile(
    r"^(?P<slot>(?:[0-9a-fA-F]{4,8}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7])\s+"
    r"(?P<class_name>.*?)\s*\[(?P<class_id>[0-9a-fA-F]{4})\]:\s+"
    r"(?P<description>.*?)\s*\[(?P<vendor_id>[0-9a-fA-F]{4}):(?P<device_id>[0-9a-fA-F]{4})\]"
    r"(?:\s+\(rev\s+(?P<rev>[0-9a-fA-F]+)\))?\s*$"
)
# What the role prints from sysfs when lspci is absent (one line per device):
#   <slot> <class> <vendor> <device>    e.g.  0000:00:1e.0 0x030200 0x10de 0x2237
_SYSFS_LINE = re.compile(
    r"^(?P<slot>[0-9a-fA-F]{4,8}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7])\s+"
    r"0x(?P<class_id>[0-9a-fA-F]{4})[0-9a-fA-F]{2}\s+"
    r"0x(?P<vendor_id>[0-9a-fA-F]{4})\s+0x(?P<device_id>[0-9a-fA-F]{4})\s*$"
)
_VENDOR_PREFIX = re.compile(r"^NVIDIA Corporation\s+", re.IGNORECASE)


def _lines(text: Any) -> list[str]:
    if text is None:
        return []
    if isinstance(text, (list, tuple)):
        text = "\n".join(str(item) for item in text)
    if not isinstance(text, str):
        raise NvidiaFilterError(
            f"expected command output (a string or a list of lines), got {type(text).__name__}"
        )
    return [line.strip() for line in text.splitlines() if line.strip()]


def _normalize_slot(slot: str) -> str:
    slot = slot.lower()
    if slot.count(":") == 1:  # lspci without -D prints no domain
        slot = "0000:" + slot
    domain, rest = slot.split(":", 1)
    return f"{int(domain, 16):04x}:{rest}"


def nvidia_pci_devices(text: Any, gpus_only: bool = True) -> list[dict[str, Any]]:
    """NVIDIA PCI functions found in `lspci -Dnn` output or the role's sysfs dump.

    Lines of other vendors, and lines that are neither format (warnings,
    lspci without -nn), are ignored. With gpus_only (default) only display
    controllers (PCI class 0x03xx) are returned: no HDMI audio, USB or NVSwitch.
    Sorted by slot; each item: slot, vendor_id, device_id, class_id,
    class_name, name (the model as lspci names it; '' from sysfs), is_gpu.
    """
    found: dict[str, dict[str, Any]] = {}
    for line in _lines(text):
        match = _LSPCI_LINE.match(line) or _SYSFS_LINE.match(line)
        if not match:
            continue
        fields = match.groupdict()
        if fields["vendor_id"].lower() != NVIDIA_VENDOR_ID:
            continue
        class_id = fields["class_id"].lower()
        is_gpu = class_id.startswith("03")
        if gpus_only and not is_gpu:
            continue
        slot = _normalize_slot(fields["slot"])
        name = _VENDOR_PREFIX.sub("", fields.get("description") or "").strip()
        found[slot] = {
            "slot": slot,
            "vendor_id": NVIDIA_VENDOR_ID,
            "device_id": fields["device_id"].lower(),
            "class_id": class_id,
            "class_name": (fields.get("class_name") or "").strip()
            or _PCI_CLASS_NAMES.get(class_id, ""),
            "name": name,
            "is_gpu": is_gpu,
        }
    return [found[slot] for slot in sorted(found)]


# nvidia-smi --query-gpu fields the role asks for by default (see
# roles/nvidia_driver/vars/main.yml); another caller may pass its own list.
DEFAULT_SMI_FIELDS = (
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
)

# query field -> (fact key, type). With --format=csv,nounits memory is MiB,
# temperature degrees C, utilization percent, power W, clocks MHz.
_SMI_KEYS: dict[str, tuple[str, str]] = {
    "index": ("index", "int"),
    "uuid": ("uuid", "str"),
    "name": ("name", "str"),
    "serial": ("serial", "str"),
    "pci.bus_id": ("pci_bus_id", "busid"),
    "driver_version": ("driver_version", "str"),
    "vbios_version": ("vbios_version", "str"),
    "memory.total": ("memory_total_mib", "int"),
    "memory.used": ("memory_used_mib", "int"),
    "memory.free": ("memory_free_mib", "int"),
    "memory.reserved": ("memory_reserved_mib", "int"),
    "temperature.gpu": ("temperature_gpu_c", "int"),
    "utilization.gpu": ("utilization_gpu_pct", "int"),
    "utilization.memory": ("utilization_memory_pct", "int"),
    "power.draw": ("power_draw_w", "float"),
    "power.limit": ("power_limit_w", "float"),
    "clocks.sm": ("clocks_sm_mhz", "int"),
    "persistence_mode": ("persistence_mode", "bool"),
    "compute_mode": ("compute_mode", "str"),
    "compute_cap": ("compute_cap", "str"),
    "mig.mode.current": ("mig_mode_current", "bool"),
}
_SMI_NOT_AVAILABLE = {
    "[n/a]",
    "n/a",
    "[not supported]",
    "[unknown error]",
    "[insufficient permissions]",
    "",
}


def _smi_key(field: str) -> tuple[str, str]:
    return _SMI_KEYS.get(
        field, (re.sub(r"[^0-9a-zA-Z]+", "_", field).strip("_").lower(), "str")
    )


def _smi_value(raw: str, kind: str) -> Any:
    value = raw.strip()
    if value.lower() in _SMI_NOT_AVAILABLE:
        return None
    if kind == "int":
        try:
            return int(value)
        except ValueError:
            try:
                return int(float(value))
            except ValueError:
                return None
    if kind == "float":
        try:
            return float(value)
        except ValueError:
            return None
    if kind == "bool":
        return value.lower() in ("enabled", "on", "yes", "true", "1")
    if kind == "busid":  # 00000000:1B:00.0 -> 0000:1b:00.0, the lspci/sysfs form
        if re.match(r"^[0-9a-fA-F]{4,8}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$", value):
            return _normalize_slot(value)
        return value
    return value


# Known failure texts of nvidia-smi -> (kind, reboot fixes it?, explanation).
_SMI_ERRORS: tuple[tuple[re.Pattern[str], str, bool, str], ...] = (
    (
        re.compile(r"Driver/library version mismatch", re.IGNORECASE),
        "version_mismatch",
        True,
        "the loaded kernel module is older than the installed user-space driver "
        "(Driver/library version mismatch): reboot the host so the new module is loaded",
    ),
    (
        re.compile(r"couldn't communicate with the NVIDIA driver", re.IGNORECASE),
        "no_driver",
        True,
        "the NVIDIA kernel module is not loaded: load it (modprobe nvidia) or reboot; "
        "if that fails, check Secure Boot (mokutil --sb-state) and the DKMS build (dkms status)",
    ),
    (
        re.compile(r"No devices were found", re.IGNORECASE),
        "no_devices",
        False,
        "the driver is loaded but sees no GPU: check that the GPU is supported by this branch "
        "(open kernel modules need Turing or newer) and dmesg | grep -i nvrm",
    ),
    (
        re.compile(
            r"GPU is lost|fallen off the bus|Unable to determine the device handle",
            re.IGNORECASE,
        ),
        "gpu_lost",
        True,
        "a GPU has fallen off the bus (Xid 79 / 'GPU is lost'): power-cycle or reboot the host and check dmesg",
    ),
    (
        re.compile(
            r"Failed to initialize NVML: (Unknown Error|Insufficient Permissions)",
            re.IGNORECASE,
        ),
        "nvml_init",
        False,
        "NVML could not be initialized (device nodes /dev/nvidia* missing or not accessible)",
    ),
    (
        re.compile(r"command not found|No such file or directory", re.IGNORECASE),
        "not_installed",
        False,
        "nvidia-smi is not installed",
    ),
    (
        re.compile(r"is not a valid field to query", re.IGNORECASE),
        "bad_query",
        False,
        "this driver does not know one of the queried fields",
    ),
)


def nvidia_smi_error(text: Any) -> dict[str, Any] | None:
    """Why nvidia-smi failed, from its combined stdout+stderr; None if no known error.

    Returns {kind, reboot_required, message, output}: kind is one of
    version_mismatch, no_driver, no_devices, gpu_lost, nvml_init, not_installed,
    bad_query; reboot_required says whether a reboot is the usual fix.
    """
    lines = _lines(text)
    joined = "\n".join(lines)
    for pattern, kind, reboot, message in _SMI_ERRORS:
        if pattern.search(joined):
            return {
                "kind": kind,
                "reboot_required": reboot,
                "message": message,
                "output": joined,
            }
    return None


def nvidia_smi_parse(text: Any, fields: Iterable[str] | None = None) -> dict[str, Any]:
    """Parse `nvidia-smi --query-gpu=<fields> --format=csv,noheader,nounits`.

    Returns {gpus, errors, error}: gpus is a list of dicts (keys from the
    field names, e.g. memory.total -> memory_total_mib, pci.bus_id ->
    pci_bus_id; '[N/A]'/'[Not Supported]' -> None); errors are the lines that
    are not data rows (e.g. a lost GPU next to healthy ones); error is
    nvidia_smi_error() of those lines.
    """
    names = list(fields) if fields is not None else list(DEFAULT_SMI_FIELDS)
    if isinstance(fields, str):
        names = [name.strip() for name in fields.split(",") if name.strip()]
    if not names:
        raise NvidiaFilterError("nvidia_smi_parse: the list of queried fields is empty")
    keys = [_smi_key(name) for name in names]
    gpus: list[dict[str, Any]] = []
    errors: list[str] = []
    for line in _lines(text):
        row = next(csv.reader([line], skipinitialspace=True))
        if len(row) != len(names) or (
            names[0] == "index" and not row[0].strip().isdigit()
        ):
            errors.append(line)
            continue
        gpus.append({key: _smi_value(raw, kind) for (key, kind), raw in zip(keys, row)})
    if "index" in names:
        gpus.sort(key=lambda gpu: (gpu.get("index") is None, gpu.get("index")))
    return {
        "gpus": gpus,
        "errors": errors,
        "error": nvidia_smi_error(errors) if errors else None,
    }


def nvidia_smi_gpus(
    text: Any, fields: Iterable[str] | None = None
) -> list[dict[str, Any]]:
    """The GPU list of nvidia_smi_parse(); fails when the output holds no GPU row
    but an error (so a broken driver is never mistaken for 'zero GPUs')."""
    parsed = nvidia_smi_parse(text, fields)
    if not parsed["gpus"] and parsed["errors"]:
        error = parsed["error"]
        reason = error["message"] if error else "unrecognised output"
        raise NvidiaFilterError(
            f"nvidia-smi reported no GPU: {reason}. Output: {' | '.join(parsed['errors'])[:500]}"
        )
    gpus: list[dict[str, Any]] = parsed["gpus"]
    return gpus


_APT_POLICY_PACKAGE = re.compile(r"^(?P<name>[a-z0-9][a-z0-9+.\-]*)(?::[a-z0-9]+)?:$")
_APT_POLICY_CANDIDATE = re.compile(r"^\s+Candidate:\s+(?P<version>\S+)")


def nvidia_apt_candidates(text: Any) -> dict[str, str | None]:
    """`apt-cache policy pkg...` -> {package: candidate version or None}.

    Packages apt does not know at all are absent from the output, hence from
    the result; '(none)' (known but not installable) maps to None.
    """
    result: dict[str, str | None] = {}
    current: str | None = None
    for raw in (text or "").splitlines() if isinstance(text, str) else _lines(text):
        package = _APT_POLICY_PACKAGE.match(raw)
        if package:
            current = package.group("name")
            result[current] = None
            continue
        candidate = _APT_POLICY_CANDIDATE.match(raw)
        if candidate and current is not None:
            version = candidate.group("version")
            result[current] = None if version == "(none)" else version
    return result


def nvidia_kernel_flavour(kernel: Any) -> str:
    """The flavour of a Debian/Ubuntu kernel release (uname -r).

    6.1.0-26-cloud-amd64 -> cloud-amd64, 6.12.43+deb13-amd64 -> amd64,
    6.8.0-45-generic -> generic, 5.15.0-1063-aws -> aws. '' when the release
    has no flavour suffix (custom kernels, RHEL's 5.14.0-427.13.1.el9_4.x86_64).
    """
    match = re.match(
        r"^\d+\.\d+(?:\.\d+)?(?:-\d+(?:\.\d+)*|\+[a-z0-9]+)-(?P<flavour>[a-z][a-z0-9.\-]*)$",
        str(kernel or ""),
    )
    return match.group("flavour") if match else ""


_PROC_VERSION = re.compile(
    r"Kernel Module(?: for [^\s]+)?\s+(?P<version>\d+\.\d+(?:\.\d+)?)"
)


def nvidia_proc_version(text: Any) -> str | None:
    """Version of the loaded kernel module from /proc/driver/nvidia/version, or None.

    NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  550.90.07  Release Build ...
    """
    match = _PROC_VERSION.search("\n".join(_lines(text)))
    return match.group("version") if match else None


def nvidia_secure_boot_state(text: Any) -> str:
    """enabled | disabled | unsupported | unknown, from `mokutil --sb-state` output
    (or the role's sysfs fallback, which prints 'SecureBoot enabled/disabled')."""
    joined = "\n".join(_lines(text)).lower()
    if "secureboot enabled" in joined:
        return "enabled"
    if "secureboot disabled" in joined:
        return "disabled"
    if (
        "doesn't support secure boot" in joined
        or "efi variables are not supported" in joined
        or "not booted with efi" in joined
    ):
        return "unsupported"
    return "unknown"


def nvidia_gpg_fingerprints(text: Any) -> list[str]:
    """Primary-key fingerprints from `gpg --show-keys --with-colons FILE` (upper case)."""
    result: list[str] = []
    expect_primary = False
    for line in _lines(text):
        parts = line.split(":")
        if parts[0] == "pub":
            expect_primary = True
        elif parts[0] == "fpr" and expect_primary and len(parts) > 9:
            result.append(parts[9].upper())
            expect_primary = False
        elif parts[0] in ("sub", "ssb"):
            expect_primary = False
    return result


class FilterModule:
    """Ansible entry point."""

    def filters(self) -> dict[str, Any]:
        return {
            "nvidia_pci_devices": nvidia_pci_devices,
            "nvidia_smi_parse": nvidia_smi_parse,
            "nvidia_smi_gpus": nvidia_smi_gpus,
            "nvidia_smi_error": nvidia_smi_error,
            "nvidia_apt_candidates": nvidia_apt_candidates,
            "nvidia_kernel_flavour": nvidia_kernel_flavour,
            "nvidia_proc_version": nvidia_proc_version,
            "nvidia_secure_boot_state": nvidia_secure_boot_state,
            "nvidia_gpg_fingerprints": nvidia_gpg_fingerprints,
        }
