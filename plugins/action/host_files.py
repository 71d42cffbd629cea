# -*- coding: utf-8 -*-
# Copyright: cosyvoice-deploy maintainers
# Apache License 2.0
"""Controller side of cosyvoice.deploy.host_files: render templates, read files, run the module once, or not at
all when `known` (the role's earlier read of these paths, package_state's `stat`) shows every path as wanted."""

from __future__ import annotations

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible.plugins.loader import lookup_loader
from ansible_collections.cosyvoice.deploy.plugins.module_utils.file_state import entry_settled


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("paths", "known", "known_key"))

    def _render(self, name: str, extra: dict | None, task_vars: dict) -> str:
        """The template as ansible.builtin.template renders it (the template lookup: same search path, ansible_managed)."""
        lookup = lookup_loader.get("ansible.builtin.template", loader=self._loader, templar=self._templar)
        return lookup.run([name], variables=task_vars, template_vars=extra or {})[0]

    def _read(self, name: str) -> str:
        path = self._find_needle("files", name)
        try:
            with open(path, encoding="utf-8") as handle:
                return handle.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise AnsibleActionFail(f"src={name}: cannot read {path} as text ({exc})") from exc

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        paths = self._task.args.get("paths")
        if not isinstance(paths, list) or not all(isinstance(p, dict) and p.get("path") for p in paths):
            raise AnsibleActionFail("host_files needs paths: a list of {path: ..., state: ...} entries")
        entries = []
        for entry in paths:
            entry = dict(entry)
            sources = [k for k in ("content", "template", "src") if entry.get(k) is not None]
            if len(sources) > 1:
                raise AnsibleActionFail(f"{entry['path']}: give one of content, template and src, not {sources}")
            if entry.get("state") in ("directory", "link", "absent"):
                # Nothing to write: a template named for the file it would be is not rendered.
                for key in ("content", "template", "src", "template_vars"):
                    entry.pop(key, None)
            elif entry.get("template") is not None:
                entry["content"] = self._render(entry.pop("template"), entry.pop("template_vars", None), task_vars)
            elif entry.get("src") is not None:
                entry["content"] = self._read(entry.pop("src"))
            entry.pop("template_vars", None)
            entries.append(entry)
        known = self._task.args.get("known")
        if known is not None and not isinstance(known, dict):
            raise AnsibleActionFail("host_files known must be the stat dict of package_state (path -> state), or omitted")
        key = self._task.args.get("known_key") or None
        if known and all(entry_settled(entry, known.get(entry["path"]), key) for entry in entries):
            # Every path is as wanted in this run's read of them: the module would change nothing.
            result.update(changed=False, changed_paths=[], settled_by_read=True)
            return result
        result.update(self._execute_module(module_name="cosyvoice.deploy.host_files",
                                           module_args={"paths": entries}, task_vars=task_vars))
        return result
