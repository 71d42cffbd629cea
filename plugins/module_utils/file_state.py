# -*- coding: utf-8 -*-
# Copyright: cosyvoice-deploy maintainers
# Apache License 2.0
"""Reading, comparing and atomically writing files on the host: shared by file_tree and host_files."""

from __future__ import annotations

import grp
import hashlib
import hmac
import os
import pwd
import stat
import tempfile

MAX_DIFF_BYTES = 64 * 1024


def content_or_none(path: str) -> bytes | None:
    """A file's content; None when it cannot be read."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return None


def sha256_of(path: str) -> str | None:
    """SHA-256 of a regular file's content; None when it cannot be read."""
    data = content_or_none(path)
    return None if data is None else hashlib.sha256(data).hexdigest()


def hmac_of(data: bytes, key: str) -> str:
    """HMAC-SHA-256 of data under key: what a read returns instead of the sha256 of a secret file, so that
    the result (shown with -v, kept in registered variables) is no unsalted hash of a password; only the
    holder of the run's key can compare it."""
    return hmac.new(key.encode("utf-8"), data, hashlib.sha256).hexdigest()


def keyed_digest_of(path: str, key: str) -> str | None:
    """hmac_of a regular file's content; None when it cannot be read."""
    data = content_or_none(path)
    return None if data is None else hmac_of(data, key)


def read_bytes(path: str) -> bytes:
    """A file's content; empty when it cannot be read."""
    return content_or_none(path) or b""


def diff_text(data: bytes) -> str | None:
    """data as text for --diff; None for binary or large content (no diff shown)."""
    if len(data) > MAX_DIFF_BYTES or b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def write_atomic(module, path: str, data: bytes, prefix: str, validate: str | None = None) -> None:
    """Write data next to path and rename it into place (readers never see half a file).

    validate: a command with %s (the new content's temporary file) that must succeed first,
    as the validate option of ansible.builtin.template/copy."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=prefix)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        if validate:
            if "%s" not in validate:
                module.fail_json(msg=f"validate for {path} must contain %s (the file to check): {validate}")
            rc, out, err = module.run_command(validate % tmp)
            if rc != 0:
                module.fail_json(msg=f"{path} was not replaced: the new content failed validation ({validate})",
                                 rc=rc, stdout=out, stderr=err)
        module.atomic_move(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def content_diff(path: str, data: bytes, existed: bool) -> dict | None:
    """A --diff entry for replacing path's content with data; None when either side is not text."""
    before = diff_text(read_bytes(path)) if existed else ""
    after = diff_text(data)
    if before is None or after is None:
        return None
    return {"before_header": path, "after_header": path, "before": before, "after": after}


# ---------------------------------------------------------------------------------------------------------
# A path's state read in one place (package_state's `stat`), and whether an entry of host_files or a
# file_tree is already what it asks for. The action plugins of host_files and file_tree decide with these on
# the controller from a read their role made earlier in the same run: a settled path costs no module run.
# Anything not read, or read otherwise than wanted, runs the module, which reads and repairs it itself.

DEFAULT_ENTRY_MODES = {"directory": "0755", "file": "0644", "attributes": "0644"}
# file_tree's purge does not descend into these directories (Python writes them next to the launcher).
TREE_SKIPPED_DIRS = frozenset({"__pycache__"})


def path_state(path: str, key: str | None = None) -> dict:
    """What is at path, links not followed: {type: absent|directory|file|link|other, mode ('0644'), uid,
    owner (name, or the uid as text), gid, group, sha256 (a file), target (a link)}. With key (a secret
    file): hmac (hmac_of the content) instead of sha256."""
    try:
        st = os.lstat(path)
    except OSError:
        return {"type": "absent"}
    kind = _kind(st.st_mode)
    if kind == "link":
        try:
            return {"type": "link", "target": os.readlink(path)}
        except OSError:
            return {"type": "other"}
    state = {"type": kind, "mode": "%04o" % stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid,
             "owner": _user_name(st.st_uid), "group": _group_name(st.st_gid)}
    if kind == "file":
        if key:
            state["hmac"] = keyed_digest_of(path, key)
        else:
            state["sha256"] = sha256_of(path)
    return state


def path_type(path: str) -> dict:
    """{type: absent|directory|file|link|other} of path, links not followed: nothing else read (no digest of
    a large file)."""
    try:
        return {"type": _kind(os.lstat(path).st_mode)}
    except OSError:
        return {"type": "absent"}


def _kind(mode: int) -> str:
    """link, directory, file or other, from an lstat mode."""
    if stat.S_ISLNK(mode):
        return "link"
    return "directory" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode) else "other"


def tree_state(root: str) -> dict:
    """path_state of root, with `tree`: {relative path: path_state} of everything below it (links not
    followed, TREE_SKIPPED_DIRS not entered)."""
    state = path_state(root)
    if state["type"] != "directory":
        return state
    tree = {}
    for current, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in TREE_SKIPPED_DIRS)
        for name in [*dirs, *sorted(names)]:
            full = os.path.join(current, name)
            tree[os.path.relpath(full, root)] = path_state(full)
    return {**state, "tree": tree}


def parent_dirs(files) -> set[str]:
    """Every directory below a tree's root that holds one of `files` (relative paths), with its own parents."""
    dirs = set()
    for rel in files:
        parent = os.path.dirname(rel)
        while parent:
            dirs.add(parent)
            parent = os.path.dirname(parent)
    return dirs


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _same_mode(wanted: str | None, state: dict) -> bool:
    """An octal mode as the entry gives it ('0644', '644'); anything else (symbolic) is not decided here."""
    try:
        return int(str(wanted), 8) == int(str(state.get("mode")), 8)
    except (TypeError, ValueError):
        return False


def attributes_settled(state: dict, owner: str, group: str, mode: str | None) -> bool:
    return (str(owner) in (state.get("owner"), str(state.get("uid")))
            and str(group) in (state.get("group"), str(state.get("gid")))
            and _same_mode(mode, state))


def content_settled(content, state: dict, key: str | None = None) -> bool:
    """Whether a file read as `state` holds content: its sha256, or its hmac under key (a secret file)."""
    if not isinstance(content, str):
        return False
    data = content.encode("utf-8")
    if "hmac" in state:
        return bool(key) and state["hmac"] is not None and hmac.compare_digest(state["hmac"], hmac_of(data, key))
    return state.get("sha256") == hashlib.sha256(data).hexdigest()


def entry_settled(entry: dict, state: dict | None, key: str | None = None) -> bool:
    """Whether the host_files module would leave this entry as it is (the host read as `state`); an entry
    it would change, fail on, or that was not read (None) is not settled. key: the one the read used for
    secret files (their state has hmac, not sha256)."""
    if not isinstance(state, dict) or "type" not in state:
        return False
    kind = entry.get("state") or "file"
    owner, group = entry.get("owner") or "root", entry.get("group") or "root"
    mode = entry.get("mode") or DEFAULT_ENTRY_MODES.get(kind)
    if kind == "absent":
        return state["type"] == "absent"
    if kind == "link":
        return state["type"] == "link" and bool(entry.get("target")) and state.get("target") == entry["target"]
    if kind == "attributes":
        return state["type"] in ("absent", "link") or attributes_settled(state, owner, group, mode)
    if kind == "directory":
        return state["type"] == "directory" and attributes_settled(state, owner, group, mode)
    if kind == "file":
        return (state["type"] == "file" and content_settled(entry.get("content"), state, key)
                and attributes_settled(state, owner, group, mode))
    return False


def tree_settled(files: dict, state: dict | None, owner: str, group: str, file_mode: str, directory_mode: str,
                 purge: bool) -> bool:
    """Whether the file_tree module would leave dest as it is: files is {relative path: {sha256}}, state is
    tree_state(dest) (None: not read)."""
    if not isinstance(state, dict) or state.get("type") != "directory" or not isinstance(state.get("tree"), dict):
        return False
    tree = state["tree"]
    if not attributes_settled(state, owner, group, directory_mode):
        return False
    for rel in parent_dirs(files):
        found = tree.get(rel) or {}
        if found.get("type") != "directory" or not attributes_settled(found, owner, group, directory_mode):
            return False
    for rel, spec in files.items():
        found = tree.get(rel) or {}
        if (found.get("type") != "file" or found.get("sha256") != spec.get("sha256")
                or not attributes_settled(found, owner, group, file_mode)):
            return False
    if purge:
        extra = [rel for rel, found in tree.items() if found.get("type") != "directory" and rel not in files]
        if extra:
            return False
    return True
