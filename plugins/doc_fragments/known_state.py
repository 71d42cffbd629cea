# -*- coding: utf-8 -*-
# Copyright: cosyvoice-deploy maintainers
# Apache License 2.0
"""The `known` option of the modules that write files (host_files, file_tree): their action plugins decide on the
controller from a read the role made earlier (package_state's `stat`) and skip the module run when nothing differs."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  known:
    description:
      - The role's read of these paths earlier in the same run, as M(cosyvoice.deploy.package_state) returns it
        (RV(cosyvoice.deploy.package_state#module:stat)). When it shows every path as wanted, the action plugin
        reports no change without running the module (no round trip to the host); otherwise, or without it, the
        module reads and repairs the paths itself. Give it only when nothing else in the role writes these paths
        between that read and this task.
    type: dict
    version_added: "1.13.0"
"""
