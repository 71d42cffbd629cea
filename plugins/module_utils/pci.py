# -*- coding: utf-8 -*-
# Copyright: cosyvoice-deploy maintainers
# Apache License 2.0
"""The PCI bus as the nvidia_driver role reads it (module host_read, option pci): `lspci -Dnn`, or without
pciutils (or when it fails) one line per function from sysfs. The filter nvidia_pci_devices reads either."""

from __future__ import annotations

import os

from ansible_collections.cosyvoice.deploy.plugins.module_utils.file_state import content_or_none

SYSFS_PCI = "/sys/bus/pci/devices"


def _read(path: str) -> str | None:
    """A sysfs attribute's text (e.g. '0x10de'); None when it cannot be read."""
    data = content_or_none(path)
    return None if data is None else data.decode("ascii", "replace").strip()


def sysfs_lines(root: str = SYSFS_PCI) -> list[str]:
    """'SLOT CLASS VENDOR DEVICE' (0x-prefixed, as sysfs writes them) for each function whose vendor is readable."""
    try:
        names = sorted(os.listdir(root))
    except OSError:
        return []
    lines = []
    for name in names:
        vendor = _read(os.path.join(root, name, "vendor"))
        if vendor is None:
            continue
        fields = [_read(os.path.join(root, name, leaf)) or "" for leaf in ("class", "device")]
        lines.append(f"{name} {fields[0]} {vendor} {fields[1]}")
    return lines


def scan_pci(module, root: str = SYSFS_PCI) -> str:
    """The scan's text, ending with a '# pci-scan: lspci|sysfs' line that names the source."""
    lspci = module.get_bin_path("lspci")
    if lspci:
        rc, out, _ = module.run_command([lspci, "-Dnn"])
        if rc == 0:
            return out + ("" if out.endswith("\n") or not out else "\n") + "# pci-scan: lspci\n"
    return "".join(line + "\n" for line in sysfs_lines(root)) + "# pci-scan: sysfs\n"
