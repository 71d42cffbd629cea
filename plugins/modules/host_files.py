#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cosyvoice-deploy maintainers
# Apache License 2.0
"""Make a list of paths on the host directories, files with a given content, or absent, in one module run."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: host_files
short_description: Directories, files and absent paths of a role in one round trip
description:
  - Makes each entry of O(paths) what it says, in order, in one module run instead of one
    M(ansible.builtin.file), M(ansible.builtin.template) or M(ansible.builtin.copy) task per path (each of
    which is a round trip to the host, also when nothing changes).
  - C(directory) - created with its missing parents (as C(mkdir -p); the parents made get the same owner, group and mode, as with M(ansible.builtin.file)), then owner, group and mode set.
    C(file) - the content compared by SHA-256 and replaced atomically only when it differs, then owner,
    group and mode set. C(absent) - removed (a directory with what it holds). C(attributes) - only the
    owner, group and mode of a path that another task writes; nothing when it does not exist (yet).
  - The action plugin of the same name turns C(template) (a role's C(templates/), rendered on the controller
    as M(ansible.builtin.template) does, with C(template_vars)) and C(src) (a role's C(files/)) into C(content)
    before the module runs.
  - Check mode reports what would change; C(--diff) shows the text of changed files. For secrets set
    C(no_log) on the task (the result and its diff are hidden then).
version_added: "1.5.0"
author:
  - cosyvoice-deploy maintainers
options:
  paths:
    description: The paths, handled in the order given.
    type: list
    elements: dict
    required: true
    suboptions:
      path:
        description: Absolute path on the host.
        type: path
        required: true
      state:
        description: What the path must be.
        type: str
        choices: [directory, file, link, absent, attributes]
        default: file
      content:
        description: Text of a C(file) (set by the action plugin from C(template) or C(src) when those are given).
        type: str
      template:
        description: Template of the role (C(templates/)) rendered on the controller into C(content).
        type: str
      template_vars:
        description: Extra variables for C(template), like the C(template_vars) of the template lookup.
        type: dict
      src:
        description: File of the role (C(files/)) read on the controller into C(content).
        type: str
      target:
        description: What a C(link) points to (a symbolic link; one in its place with another target, or a file, is replaced).
        type: path
      owner:
        description: Owner (not for C(absent)).
        type: str
        default: root
      group:
        description: Group (not for C(absent)).
        type: str
        default: root
      mode:
        description: Mode as an octal string (not for C(absent)); C(0755) for directories and C(0644) for files and C(attributes) when omitted.
        type: str
      validate:
        description:
          - Command that checks a C(file)'s new content before it replaces the old one, C(%s) standing for a
            temporary copy (as the C(validate) of M(ansible.builtin.template)). Run only when the content
            differs; a failure leaves the old file in place and fails the task.
        type: str
  known_key:
    description:
      - The key O(known)'s read used for its secret files (M(cosyvoice.deploy.package_state)'s
        O(cosyvoice.deploy.package_state#module:stat.key)), under which their content is compared by HMAC. Without
        it a secret file read that way is never taken as settled (the module reads it). Never logged.
    type: str
    version_added: "1.14.0"
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
extends_documentation_fragment:
  - cosyvoice.deploy.known_state
"""

EXAMPLES = r"""
- name: Create the role's directories and write its units
  cosyvoice.deploy.host_files:
    paths:
      - {path: /opt/cosyvoice, state: directory}
      - {path: /var/lib/cosyvoice, state: directory, owner: cosyvoice, group: cosyvoice, mode: "0750"}
      - {path: /etc/systemd/system/cosyvoice-watchdog.timer, template: watchdog.timer.j2}
      - {path: /etc/systemd/system/cosyvoice-restart.timer, state: absent}
"""

RETURN = r"""
changed_paths:
  description: Paths created, rewritten, re-owned, re-moded or removed (or that would be in check mode), in order.
  returned: always
  type: list
  elements: str
settled_by_read:
  description: True when O(known) showed everything as wanted, so the module did not run.
  returned: when the module did not run
  type: bool
  version_added: "1.13.0"
"""

import hashlib
import os
import shutil

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.cosyvoice.deploy.plugins.module_utils.file_state import (
    DEFAULT_ENTRY_MODES,
    content_diff,
    sha256_of,
    write_atomic,
)



def _attributes(module: AnsibleModule, entry: dict, changed: bool) -> bool:
    args = module.load_file_common_arguments({
        "path": entry["path"], "owner": entry["owner"], "group": entry["group"],
        "mode": entry["mode"] or DEFAULT_ENTRY_MODES[entry["state"]],
    })
    return module.set_fs_attributes_if_different(args, changed)


def _directory(module: AnsibleModule, entry: dict) -> bool:
    path = entry["path"]
    if os.path.lexists(path) and not os.path.isdir(path):
        module.fail_json(msg=f"{path} exists and is not a directory: move it away, this role needs a directory there")
    changed = not os.path.isdir(path)
    if changed and module.check_mode:
        return True
    if changed:
        # Missing parents get the entry's owner, group and mode too (as ansible.builtin.file does).
        missing = []
        current = path
        while current and not os.path.isdir(current):
            missing.append(current)
            current = os.path.dirname(current)
        for directory in reversed(missing):
            os.mkdir(directory)
            _attributes(module, {**entry, "path": directory}, True)
    return _attributes(module, entry, changed)


def _file(module: AnsibleModule, entry: dict, diffs: list) -> bool:
    path = entry["path"]
    if entry["content"] is None:
        module.fail_json(msg=f"{path}: a file needs content (or template/src through the action plugin)")
    if os.path.isdir(path):
        module.fail_json(msg=f"{path} is a directory: remove it, this role writes a file there")
    data = entry["content"].encode("utf-8")
    existed = os.path.exists(path)
    changed = sha256_of(path) != hashlib.sha256(data).hexdigest()
    if changed:
        if module._diff:
            diff = content_diff(path, data, existed)
            if diff:
                diffs.append(diff)
        if module.check_mode:
            return True
        if not os.path.isdir(os.path.dirname(path)):
            os.makedirs(os.path.dirname(path))
        write_atomic(module, path, data, ".host_files.", validate=entry["validate"])
    return _attributes(module, entry, changed)


def _link(module: AnsibleModule, entry: dict) -> bool:
    path, target = entry["path"], entry["target"]
    if not target:
        module.fail_json(msg=f"{path}: a link needs target")
    if os.path.islink(path) and os.readlink(path) == target:
        return False
    if os.path.isdir(path) and not os.path.islink(path):
        module.fail_json(msg=f"{path} is a directory: remove it, this role makes a link to {target} there")
    if not module.check_mode:
        tmp = os.path.join(os.path.dirname(path), f".host_files.{os.getpid()}.{os.path.basename(path)}")
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(target, tmp)
        os.rename(tmp, path)
    return True


def _existing(module: AnsibleModule, entry: dict) -> bool:
    """Owner, group and mode of a path written elsewhere (not followed when it is a link)."""
    if not os.path.lexists(entry["path"]) or os.path.islink(entry["path"]):
        return False
    return _attributes(module, entry, False)


def _absent(module: AnsibleModule, entry: dict) -> bool:
    path = entry["path"]
    if not os.path.lexists(path):
        return False
    if not module.check_mode:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    return True


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "paths": {
                "type": "list", "elements": "dict", "required": True,
                "options": {
                    "path": {"type": "path", "required": True},
                    "state": {"type": "str", "default": "file",
                              "choices": ["directory", "file", "link", "absent", "attributes"]},
                    "target": {"type": "path"},
                    "content": {"type": "str"},
                    "template": {"type": "str"},
                    "template_vars": {"type": "dict"},
                    "src": {"type": "str"},
                    "owner": {"type": "str", "default": "root"},
                    "group": {"type": "str", "default": "root"},
                    "mode": {"type": "str"},
                    "validate": {"type": "str"},
                },
            },
            "known": {"type": "dict"},
            "known_key": {"type": "str", "no_log": True},
        },
        supports_check_mode=True,
    )
    changed_paths: list[str] = []
    diffs: list[dict] = []
    for entry in module.params["paths"]:
        if not os.path.isabs(entry["path"]):
            module.fail_json(msg=f"{entry['path']!r}: paths must be absolute")
        if entry["state"] == "directory":
            changed = _directory(module, entry)
        elif entry["state"] == "file":
            changed = _file(module, entry, diffs)
        elif entry["state"] == "link":
            changed = _link(module, entry)
        elif entry["state"] == "attributes":
            changed = _existing(module, entry)
        else:
            changed = _absent(module, entry)
        if changed:
            changed_paths.append(entry["path"])
    result = {"changed": bool(changed_paths), "changed_paths": changed_paths}
    if diffs:
        result["diff"] = diffs
    module.exit_json(**result)


if __name__ == "__main__":
    main()
