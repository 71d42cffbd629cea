#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cosyvoice-deploy maintainers
# Apache License 2.0
"""An htpasswd file holding exactly the given users and passwords, in one module run."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: htpasswd_users
short_description: Make an htpasswd file hold exactly the given users with the given passwords, in one run
description:
  - Reads O(path) with passlib's C(HtpasswdFile), checks every user of O(users) against its hash, adds the
    missing users, rehashes the ones whose password does not match, removes the users that are not listed,
    and writes the file (atomically) only when one of these changed. Then sets O(owner), O(group) and
    O(mode). One module run where M(community.general.htpasswd) needs one per user plus a read of the
    names to find the users to remove.
  - A password that still matches keeps its hash (and its salt), as M(community.general.htpasswd) does,
    so a file written by that module is a no-op for this one.
  - A file passlib cannot parse is replaced by one with the listed users (the role owns the file).
  - Never returns or shows a password or a hash; C(--diff) shows the user names before and after.
    Set C(no_log) on the task anyway (the passwords are in its arguments).
  - Needs passlib on the host (C(python3-passlib)), and C(python3-bcrypt) for O(hash_scheme=bcrypt).
version_added: "1.11.0"
author:
  - cosyvoice-deploy maintainers
options:
  path:
    description: The htpasswd file.
    type: path
    required: true
  users:
    description: Every user the file must hold, and no other.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: User name (no C(:), no whitespace).
        type: str
        required: true
      password:
        description: Password in clear text (hashed on the host with O(hash_scheme)).
        type: str
        required: true
  hash_scheme:
    description: passlib scheme for new or changed passwords.
    type: str
    default: apr_md5_crypt
    choices: [apr_md5_crypt, sha256_crypt, sha512_crypt, bcrypt]
  owner:
    description: Owner of the file.
    type: str
    default: root
  group:
    description: Group of the file.
    type: str
    default: root
  mode:
    description: Mode of the file, as an octal string.
    type: str
    default: "0640"
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
"""

EXAMPLES = r"""
- name: Give nginx exactly these login users
  cosyvoice.deploy.htpasswd_users:
    path: /etc/nginx/cosyvoice.htpasswd
    users: "{{ nginx_proxy_auth_users }}"
    group: www-data
    mode: "0640"
  no_log: true
"""

RETURN = r"""
added:
  description: Users that were not in the file.
  returned: always
  type: list
  elements: str
updated:
  description: Users whose password did not match their hash (rehashed).
  returned: always
  type: list
  elements: str
removed:
  description: Users in the file that O(users) does not list.
  returned: always
  type: list
  elements: str
"""

import os

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.cosyvoice.deploy.plugins.module_utils.file_state import write_atomic
from ansible_collections.cosyvoice.deploy.plugins.module_utils.htpasswd import (
    HTPASSWD_SPEC, load, passlib_missing, reconcile)

def main() -> None:
    module = AnsibleModule(
        argument_spec=HTPASSWD_SPEC,
        supports_check_mode=True,
    )
    error = passlib_missing()
    if error:
        module.fail_json(msg=missing_required_lib("passlib (python3-passlib)"), exception=error)
    path, users = module.params["path"], module.params["users"]
    names = [user["name"] for user in users]
    bad = [name for name in names if not name or ":" in name or any(c.isspace() for c in name)]
    if bad or len(set(names)) != len(names):
        module.fail_json(msg=f"users: names must be unique, without ':' or whitespace: {names}")
    if os.path.isdir(path):
        module.fail_json(msg=f"{path} is a directory: remove it, this module writes the htpasswd file there")
    ht, readable = load(path, module.params["hash_scheme"])
    before = sorted(ht.users()) if readable else ["(unreadable file)"]
    try:
        changes = reconcile(ht, users)
    except (ValueError, RuntimeError) as err:  # e.g. bcrypt without python3-bcrypt (MissingBackendError)
        module.fail_json(msg=f"{path}: cannot hash with {module.params['hash_scheme']}: {err}")
    changed = not readable or any(changes.values())
    if changed and not module.check_mode:
        write_atomic(module, path, ht.to_string(), ".htpasswd_users.")
    result = {"changed": changed, **changes}
    if os.path.exists(path):
        args = module.load_file_common_arguments({"path": path, "owner": module.params["owner"],
                                                  "group": module.params["group"], "mode": module.params["mode"]})
        result["changed"] = module.set_fs_attributes_if_different(args, result["changed"])
    elif module.check_mode:
        result["changed"] = True
    if module._diff and changed:
        result["diff"] = {"before_header": f"{path} (users)", "after_header": f"{path} (users)",
                          "before": "\n".join(before) + "\n",
                          "after": "\n".join(sorted(names)) + "\n"}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
