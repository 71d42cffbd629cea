# -*- coding: utf-8 -*-
# Copyright: cosyvoice-deploy maintainers
# Apache License 2.0
"""Controller side of cosyvoice.deploy.file_tree: read the source tree, run the module once, or not at all when
`known` (the role's earlier read of dest with all it holds, package_state's `stat` trees) shows it as wanted."""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import os

from ansible.errors import AnsibleActionFail
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase
from ansible_collections.cosyvoice.deploy.plugins.module_utils.file_state import tree_settled

DEFAULT_EXCLUDE = ["__pycache__", "*.pyc", ".*"]
MAX_TREE_BYTES = 4 * 1024 * 1024


def read_tree(root: str, exclude: list[str]) -> dict[str, dict[str, str]]:
    """{relative path: {content (base64), sha256}} of the regular files below root, excluded names skipped."""
    files: dict[str, dict[str, str]] = {}
    total = 0
    for current, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not any(fnmatch.fnmatch(d, pat) for pat in exclude))
        for name in sorted(names):
            if any(fnmatch.fnmatch(name, pat) for pat in exclude):
                continue
            path = os.path.join(current, name)
            if not os.path.isfile(path):
                continue
            with open(path, "rb") as handle:
                data = handle.read()
            total += len(data)
            if total > MAX_TREE_BYTES:
                raise AnsibleActionFail(f"{root} holds more than {MAX_TREE_BYTES} bytes: use ansible.builtin.copy")
            rel = os.path.relpath(path, root)
            files[rel] = {"content": base64.b64encode(data).decode("ascii"), "sha256": hashlib.sha256(data).hexdigest()}
    return files


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("src", "dest", "owner", "group", "file_mode", "directory_mode", "purge", "exclude", "known"))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        args = dict(self._task.args)
        src = args.pop("src", None)
        if not src or not args.get("dest"):
            raise AnsibleActionFail("file_tree needs src (a directory on the controller) and dest")
        root = self._find_needle("files", src)
        if not os.path.isdir(root):
            raise AnsibleActionFail(f"src={src} is not a directory on the controller ({root})")
        exclude = args.get("exclude") or DEFAULT_EXCLUDE
        args["files"] = read_tree(root, exclude)
        if not args["files"]:
            raise AnsibleActionFail(f"src={src} ({root}) holds no files to install")
        known = args.pop("known", None)
        if known is not None and not isinstance(known, dict):
            raise AnsibleActionFail("file_tree known must be the stat dict of package_state (path -> state), or omitted")
        if known and tree_settled(args["files"], known.get(args["dest"]), args.get("owner") or "root",
                                  args.get("group") or "root", args.get("file_mode") or "0644",
                                  args.get("directory_mode") or "0755", boolean(args.get("purge", False), strict=False)):
            # dest holds exactly these files as wanted in this run's read of it: the module would change nothing.
            result.update(changed=False, changed_files=[], removed_files=[], count=len(args["files"]),
                          settled_by_read=True)
            return result
        result.update(self._execute_module(module_name="cosyvoice.deploy.file_tree", module_args=args,
                                           task_vars=task_vars))
        return result
