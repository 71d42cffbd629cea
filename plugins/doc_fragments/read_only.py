# -*- coding: utf-8 -*-
# Copyright: cosyvoice-deploy maintainers
# Apache License 2.0
"""Attributes of the collection's read-only modules (host_probe, package_state, python_env_state,
git_checkout_state, tls_selfsigned_state): they change nothing, so they run the same in check mode and have no diff."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
author:
  - cosyvoice-deploy maintainers
attributes:
  check_mode:
    support: full
    details: The module only reads; it runs the same in check mode.
  diff_mode:
    support: none
"""
