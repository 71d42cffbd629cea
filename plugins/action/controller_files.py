# -*- coding: utf-8 -*-
# Copyright: cosyvoice-deploy maintainers
# Apache License 2.0
"""cosyvoice.deploy.controller_files: write text files on the controller, in the task's own process."""

from __future__ import annotations

import os
import tempfile

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase


def write_files(files: dict) -> list[str]:
    """Write each {absolute path: text}; return the paths whose content changed (created or replaced).

    A file whose content is already the text is not touched; a new content replaces the old one
    atomically (a temp file next to it, renamed). Missing directories are made."""
    changed = []
    for path, text in files.items():
        if not isinstance(path, str) or not os.path.isabs(path):
            raise AnsibleActionFail(f"controller_files: {path!r} is not an absolute path")
        if not isinstance(text, str):
            raise AnsibleActionFail(f"controller_files: the content of {path} must be text, not {type(text).__name__}")
        data = text.encode("utf-8")
        try:
            with open(path, "rb") as handle:
                if handle.read() == data:
                    continue
        except OSError:
            pass
        directory = os.path.dirname(path)
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        changed.append(path)
    return changed


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("files",))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        files = self._task.args.get("files")
        if not isinstance(files, dict):
            raise AnsibleActionFail("controller_files needs files: a mapping of absolute path to text")
        # A relative path is relative to the playbook's directory (as fetch's dest).
        files = {self._loader.path_dwim(path) if isinstance(path, str) and path and not os.path.isabs(path) else path: text
                 for path, text in files.items()}
        if self._task.check_mode:
            result.update(changed=False, written=[], skipped_reason="check mode: nothing written")
            return result
        try:
            written = write_files(files)
        except OSError as err:
            raise AnsibleActionFail(f"controller_files: {err}") from err
        result.update(changed=bool(written), written=written)
        return result
