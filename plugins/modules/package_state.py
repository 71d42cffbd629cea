#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cosyvoice-deploy maintainers
# Apache License 2.0
"""Which of some packages are not installed, read from dpkg or rpm (read-only, fast)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: package_state
short_description: Tell which of the given packages are not installed (dpkg or rpm), without the package manager
description:
  - Reads the installed state of O(names) from C(dpkg-query) (Debian, Ubuntu) or C(rpm -q) (RHEL family) in one
    command, without opening the package manager's cache, so that a role runs M(ansible.builtin.apt) or
    M(ansible.builtin.package) only for what is missing (on a converged host, not at all).
  - A name that is not an installed package (not installed, half-installed, removed with its configuration
    kept, or a virtual package name) is reported missing; the package manager then decides.
  - Read-only; check mode runs it too.
version_added: "1.5.0"
author:
  - cosyvoice-deploy maintainers
options:
  names:
    description: Package names (no versions).
    type: list
    elements: str
    required: true
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Find the packages that are missing
  cosyvoice.deploy.package_state:
    names: [nginx, python3-passlib]
  register: nginx_packages

- name: Install what is missing
  ansible.builtin.apt:
    name: "{{ nginx_packages.missing }}"
  when: nginx_packages.missing | length > 0
"""

RETURN = r"""
missing:
  description: The names of O(names) that are not installed, in the order given.
  returned: always
  type: list
  elements: str
  sample: [python3-passlib]
tool:
  description: What was asked (dpkg-query or rpm); none when neither exists (every name is then missing).
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule


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


def main() -> None:
    module = AnsibleModule(argument_spec={"names": {"type": "list", "elements": "str", "required": True}},
                           supports_check_mode=True)
    names = module.params["names"]
    bad = [n for n in names if not n or any(c in n for c in " =<>*")]
    if bad:
        module.fail_json(msg=f"names must be plain package names without versions or patterns: {bad}")
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
    module.exit_json(changed=False, missing=[n for n in names if n not in installed], tool=tool)


if __name__ == "__main__":
    main()
