# -*- coding: utf-8 -*-
# Copyright: cosyvoice-deploy maintainers
# Apache License 2.0
"""Lookup plugin: the layered distribution variable files of a role."""

from __future__ import annotations

DOCUMENTATION = r"""
name: distro_vars
author: cosyvoice-deploy maintainers
short_description: The distribution variable files of a role, least specific first
description:
  - Every role of this collection loads its distribution variables the same way
    (one include_vars task over this lookup). The files that exist in the given
    directory are returned in this order, so that a more specific file overrides
    a less specific one key by key
  - C(default.yml), C(<os_family>.yml), C(<distribution>.yml),
    C(<os_family>-<major>.yml), C(<distribution>-<major>.yml),
    C(<distribution>-<version>.yml).
  - Names come from the host's facts (C(ansible_facts['os_family']),
    C(['distribution']), C(['distribution_major_version']), C(['distribution_version'])).
options:
  _terms:
    description: The role's vars directory, normally C(role_path ~ '/vars').
    required: true
    type: list
    elements: path
  required:
    description: Fail, naming the distribution and the directory, when no file matches.
    type: bool
    default: true
"""

EXAMPLES = r"""
- name: Load distribution variables
  ansible.builtin.include_vars: "{{ item }}"
  loop: "{{ query('cosyvoice.deploy.distro_vars', role_path ~ '/vars') }}"
"""

RETURN = r"""
_raw:
  description: Absolute paths of the existing files, least specific first.
  type: list
  elements: path
"""

import os

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase


def candidates(facts: dict) -> list[str]:
    """File names to look for, least specific first (duplicates dropped)."""
    family = str(facts.get("os_family") or "")
    dist = str(facts.get("distribution") or "")
    major = str(facts.get("distribution_major_version") or "")
    version = str(facts.get("distribution_version") or "")
    names = ["default"]
    names += [n for n in (family, dist) if n]
    if major:
        names += [f"{n}-{major}" for n in (family, dist) if n]
    if version and version != major:
        names += [f"{dist}-{version}"] if dist else []
    seen: list[str] = []
    for name in names:
        if f"{name}.yml" not in seen:
            seen.append(f"{name}.yml")
    return seen


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        required = bool(kwargs.get("required", True))
        facts = (variables or {}).get("ansible_facts") or {}
        if hasattr(self, "_templar") and self._templar is not None:
            facts = self._templar.template(facts)
        found: list[str] = []
        for directory in terms:
            for name in candidates(dict(facts)):
                path = os.path.join(str(directory), name)
                if os.path.isfile(path):
                    found.append(path)
        if not found and required:
            raise AnsibleLookupError(
                f"no distribution variables for {facts.get('distribution', '?')} {facts.get('distribution_version', '?')} "
                f"(os_family {facts.get('os_family', '?')}) in {', '.join(map(str, terms))}: this distribution is not "
                "supported by the role; add a vars file for it there"
            )
        return found
