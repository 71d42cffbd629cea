#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cosyvoice-deploy maintainers
# Apache License 2.0
"""Make a directory tree on the host hold exactly the given files, in one module run."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: file_tree
short_description: Install a small tree of files (a Python package, scripts) in one round trip
description:
  - Makes O(dest) hold the files of a directory of the controller, with one owner, group and mode, in one
    module run instead of one C(stat) and C(copy) per file (what M(ansible.builtin.copy) with a directory
    source does).
  - The action plugin of the same name reads O(src) on the controller (a role's C(files/) directory is
    searched first, as for M(ansible.builtin.copy)) and sends the files' contents with their SHA-256; the
    module compares them with what is on the host and rewrites only files whose content, owner, group or
    mode differ, each atomically.
  - With O(purge), files under O(dest) that are not in O(src) are removed (C(__pycache__) directories are
    left alone), so a file deleted from the role is also gone from hosts.
  - Check mode reports what would change; C(--diff) shows the changed text files.
  - Meant for small trees (the whole content travels in the module's arguments); large data belongs in
    M(ansible.builtin.copy) or M(ansible.builtin.unarchive).
version_added: "1.1.0"
author:
  - cosyvoice-deploy maintainers
options:
  src:
    description:
      - Directory on the controller (relative paths are looked up in the role's C(files/) first).
      - Read by the action plugin; the module receives O(files).
    type: path
  dest:
    description: Directory on the host. Created with O(directory_mode) when missing.
    type: path
    required: true
  owner:
    description: Owner of the directories and files.
    type: str
    default: root
  group:
    description: Group of the directories and files.
    type: str
    default: root
  file_mode:
    description: Mode of every file (octal string).
    type: str
    default: "0644"
  directory_mode:
    description: Mode of every directory, O(dest) included (octal string).
    type: str
    default: "0755"
  purge:
    description: Remove files under O(dest) that are not in O(src).
    type: bool
    default: false
  exclude:
    description: Names (fnmatch patterns) of files and directories of O(src) not to install.
    type: list
    elements: str
    default: ["__pycache__", "*.pyc", ".*"]
  files:
    description:
      - Set by the action plugin, not by tasks. Relative path -> C(content) (base64) and C(sha256).
    type: dict
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
extends_documentation_fragment:
  - cosyvoice.deploy.known_state
"""

EXAMPLES = r"""
- name: Install the launcher package
  cosyvoice.deploy.file_tree:
    src: launcher/
    dest: /opt/cosyvoice/launcher
    owner: root
    group: root
    purge: true
  notify: Restart cosyvoice
"""

RETURN = r"""
changed_files:
  description: Files written (or that would be written in check mode), relative to O(dest).
  returned: always
  type: list
  elements: str
removed_files:
  description: Files removed by O(purge) (or that would be), relative to O(dest).
  returned: always
  type: list
  elements: str
count:
  description: Number of files in the tree.
  returned: always
  type: int
settled_by_read:
  description: True when O(known) showed everything as wanted, so the module did not run.
  returned: when the module did not run
  type: bool
  version_added: "1.13.0"
"""

import base64
import hashlib
import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.cosyvoice.deploy.plugins.module_utils.file_state import (
    TREE_SKIPPED_DIRS,
    content_diff,
    parent_dirs,
    sha256_of,
    write_atomic,
)


def _attrs(module: AnsibleModule, path: str, mode: str) -> dict:
    return module.load_file_common_arguments(
        {"path": path, "owner": module.params["owner"], "group": module.params["group"], "mode": mode}
    )


def _ensure_dir(module: AnsibleModule, path: str, result: dict) -> None:
    if not os.path.isdir(path):
        result["changed"] = True
        if module.check_mode:
            return
        os.makedirs(path, exist_ok=True)
    if os.path.isdir(path):
        result["changed"] = module.set_fs_attributes_if_different(
            _attrs(module, path, module.params["directory_mode"]), result["changed"]
        )


def _install(module: AnsibleModule, dest: str, rel: str, spec: dict, result: dict) -> None:
    path = os.path.join(dest, rel)
    data = base64.b64decode(spec["content"])
    if hashlib.sha256(data).hexdigest() != spec["sha256"]:
        module.fail_json(msg=f"{rel}: the content does not match its sha256 (transfer damaged)")
    if sha256_of(path) != spec["sha256"]:
        diff = content_diff(path, data, os.path.exists(path)) if module._diff else None
        if diff:
            result["diff"].append(diff)
        result["changed_files"].append(rel)
        result["changed"] = True
        if not module.check_mode:
            _ensure_dir(module, os.path.dirname(path), result)
            write_atomic(module, path, data, ".file_tree.")
    if os.path.exists(path):
        changed = module.set_fs_attributes_if_different(_attrs(module, path, module.params["file_mode"]), False)
        if changed and rel not in result["changed_files"]:
            result["changed_files"].append(rel)
        result["changed"] = result["changed"] or changed


def _purge(module: AnsibleModule, dest: str, wanted: set[str], result: dict) -> None:
    for root, dirs, names in os.walk(dest):
        dirs[:] = [d for d in dirs if d not in TREE_SKIPPED_DIRS]
        for name in names:
            rel = os.path.relpath(os.path.join(root, name), dest)
            if rel not in wanted:
                result["removed_files"].append(rel)
                result["changed"] = True
                if not module.check_mode:
                    os.unlink(os.path.join(root, name))


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "src": {"type": "path"},
            "dest": {"type": "path", "required": True},
            "owner": {"type": "str", "default": "root"},
            "group": {"type": "str", "default": "root"},
            "file_mode": {"type": "str", "default": "0644"},
            "directory_mode": {"type": "str", "default": "0755"},
            "purge": {"type": "bool", "default": False},
            "exclude": {"type": "list", "elements": "str", "default": ["__pycache__", "*.pyc", ".*"]},
            "files": {"type": "dict", "required": True, "no_log": True},
            "known": {"type": "dict"},
        },
        supports_check_mode=True,
    )
    dest = module.params["dest"]
    files = module.params["files"]
    result: dict = {"changed": False, "changed_files": [], "removed_files": [], "count": len(files), "diff": []}
    for rel in files:
        if os.path.isabs(rel) or os.path.normpath(rel).startswith(".."):
            module.fail_json(msg=f"{rel!r}: file paths must be relative and stay inside dest")
    _ensure_dir(module, dest, result)
    for rel in sorted(parent_dirs(files)):
        _ensure_dir(module, os.path.join(dest, rel), result)
    for rel in sorted(files):
        _install(module, dest, rel, files[rel], result)
    if module.params["purge"] and os.path.isdir(dest):
        _purge(module, dest, set(files), result)
    if not result["diff"]:
        del result["diff"]
    module.exit_json(**result)


if __name__ == "__main__":
    main()
