# -*- coding: utf-8 -*-
# Copyright: cosyvoice-deploy maintainers
# Apache License 2.0
"""An htpasswd file holding exactly some users: shared by htpasswd_users (which makes it so) and by
package_state's `htpasswd` (the nginx_proxy role's first read tells whether it already is)."""

from __future__ import annotations

import os
import traceback

from ansible_collections.cosyvoice.deploy.plugins.module_utils.file_state import attributes_settled, path_state


def passlib_missing() -> str | None:
    """None when python3-passlib imports; else the import's traceback (imported only by load())."""
    try:
        import passlib.apache  # noqa: F401  pylint: disable=unused-import
    except ImportError:
        return traceback.format_exc()
    return None


# The options (htpasswd_users', package_state's htpasswd suboptions).
HTPASSWD_SPEC = {
    "path": {"type": "path", "required": True},
    "users": {"type": "list", "elements": "dict", "required": True,
              "options": {"name": {"type": "str", "required": True},
                          "password": {"type": "str", "required": True, "no_log": True}}},
    "hash_scheme": {"type": "str", "default": "apr_md5_crypt",
                    "choices": ["apr_md5_crypt", "sha256_crypt", "sha512_crypt", "bcrypt"]},
    "owner": {"type": "str", "default": "root"},
    "group": {"type": "str", "default": "root"},
    "mode": {"type": "str", "default": "0640"},
}


def load(path: str, scheme: str):
    """The file as passlib reads it, and whether it could be read (a missing file is empty and readable)."""
    from passlib.apache import HtpasswdFile

    if not os.path.exists(path):
        return HtpasswdFile(default_scheme=scheme), True
    try:
        return HtpasswdFile(path, default_scheme=scheme), True
    except (ValueError, UnicodeDecodeError):
        return HtpasswdFile(default_scheme=scheme), False


def reconcile(ht, users: list[dict]) -> dict[str, list[str]]:
    """Make ht hold exactly `users`; what was added, rehashed and removed (names only)."""
    wanted = [user["name"] for user in users]
    changes: dict[str, list[str]] = {"added": [], "updated": [], "removed": []}
    for name in [n for n in ht.users() if n not in wanted]:
        ht.delete(name)
        changes["removed"].append(name)
    for user in users:
        try:
            match = ht.check_password(user["name"], user["password"])
        except ValueError:  # a hash passlib cannot identify: rehashed
            match = False
        if match is None:
            changes["added"].append(user["name"])
        elif match:
            continue
        else:
            changes["updated"].append(user["name"])
        ht.set_password(user["name"], user["password"])
    return changes


def htpasswd_settled(path: str, users: list[dict], scheme: str, owner: str, group: str, mode: str) -> bool:
    """Whether htpasswd_users would leave path as it is: a readable file holding exactly `users`, every
    password matching its hash, with this owner, group and mode. False without passlib."""
    if passlib_missing():
        return False
    state = path_state(path)
    if state["type"] != "file" or not attributes_settled(state, owner, group, mode):
        return False
    ht, readable = load(path, scheme)
    if not readable:
        return False
    try:
        return not any(reconcile(ht, users).values())
    except (ValueError, RuntimeError):
        return False
