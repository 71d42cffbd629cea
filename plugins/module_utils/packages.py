# -*- coding: utf-8 -*-
# Copyright: cosyvoice-deploy maintainers
# Apache License 2.0
"""Which of a list of packages are installed: one `dpkg-query` (Debian, Ubuntu) or one `rpm -q`
(RHEL family) for the whole list. The package_state module and os_firewall_facts (the firewall
packages, read in the same run as the firewall) ask through here.

A name the database does not know, or knows but not as fully installed (removed with its config
kept, half-configured, a virtual name), counts as missing: the package manager then decides.
"""

from __future__ import annotations

# Characters that make a name a version, a comparison or a pattern.
NOT_IN_NAMES = " =<>*"


def bad_names(names: list[str]) -> list[str]:
    """The entries of `names` that are not plain package names (empty, a version, a pattern)."""
    return [n for n in names if not n or any(c in n for c in NOT_IN_NAMES)]


def dpkg_installed(output: str) -> set[str]:
    """Names whose dpkg status is install ok installed ("ii"), from `dpkg-query -W -f '${db:Status-Abbrev}|${Package}\\n'`;
    multi-arch names (name:arch) count for their plain name too."""
    installed = set()
    for line in output.splitlines():
        status, _, name = line.partition("|")
        if status.strip() == "ii" and name:
            installed.add(name.strip())
            installed.add(name.strip().split(":")[0])
    return installed


def rpm_installed(output: str) -> set[str]:
    """Names that `rpm -q --qf '%{NAME}\\n'` printed (a missing name prints 'package X is not installed')."""
    return {line.strip() for line in output.splitlines() if line.strip() and " " not in line.strip()}


def missing_packages(module, names: list[str]) -> tuple[list[str], str]:
    """(the names not installed, in the order given; the tool asked: dpkg-query, rpm or none).
    Without either tool every name is missing."""
    installed: set[str] = set()
    tool = "none"
    if names and module.get_bin_path("dpkg-query"):
        tool = "dpkg-query"
        # rc 1 when some name is unknown: the known ones are still printed.
        _, out, _ = module.run_command(["dpkg-query", "-W", "-f", "${db:Status-Abbrev}|${Package}\n", *names])
        installed = dpkg_installed(out)
    elif names and module.get_bin_path("rpm"):
        tool = "rpm"
        _, out, _ = module.run_command(["rpm", "-q", "--qf", "%{NAME}\n", *names])
        installed = rpm_installed(out)
    return [n for n in names if n not in installed], tool
