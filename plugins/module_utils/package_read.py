# -*- coding: utf-8 -*-
# Copyright: cosyvoice-deploy maintainers
# Apache License 2.0
"""A role's first read of the host (module package_state; module host_read runs several in one go): which
packages are not installed, the state of units, accounts and paths, a git checkout, a self-signed key and
certificate, an htpasswd file."""

from __future__ import annotations

import fnmatch
import grp
import os
import pwd

from ansible_collections.cosyvoice.deploy.plugins.module_utils.file_state import path_state, path_type, tree_state
from ansible_collections.cosyvoice.deploy.plugins.module_utils.git_checkout import (
    CHECKOUT_SPEC, GIT_MISSING, read_checkout)
from ansible_collections.cosyvoice.deploy.plugins.module_utils.htpasswd import HTPASSWD_SPEC, htpasswd_settled
from ansible_collections.cosyvoice.deploy.plugins.module_utils.tls_state import (
    SELFSIGNED_SPEC, cryptography_missing, read_selfsigned)
from ansible_collections.cosyvoice.deploy.plugins.module_utils.packages import bad_names, missing_packages
from ansible_collections.cosyvoice.deploy.plugins.module_utils.systemd import parse_show_units

SHADOW = "/etc/shadow"
# Shadow password fields that hold no hash: these are reported as they are.
NO_HASH = {"", "!", "*", "!!", "!*"}


def unit_states(output: str, units: list[str]) -> dict[str, dict[str, str]]:
    """`systemctl show -p ActiveState -p UnitFileState UNIT...` output (one block per unit, in the order
    asked; module_utils.systemd parses it) as {unit: {active, enabled}}; an empty UnitFileState is
    `not-found`, no output at all `unknown`."""
    states = {unit: {"active": props.get("ActiveState") or "unknown", "enabled": props.get("UnitFileState") or "not-found"}
              for unit, props in zip(units, parse_show_units(output))}
    for unit in units:
        states.setdefault(unit, {"active": "unknown", "enabled": "unknown"})
    return states


def shadow_fields(text: str | None) -> dict[str, str]:
    """name -> password field of a shadow file, the field itself only when it holds no hash ('hashed' else)."""
    fields = {}
    for line in (text or "").splitlines():
        parts = line.split(":")
        if len(parts) > 1:
            fields[parts[0]] = parts[1] if parts[1] in NO_HASH else "hashed"
    return fields


def read_shadow(path: str = SHADOW) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return None


def user_state(name: str, shadow: dict[str, str] | None) -> dict | None:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    try:
        group = grp.getgrgid(entry.pw_gid).gr_name
    except KeyError:
        group = str(entry.pw_gid)
    return {"uid": entry.pw_uid, "group": group, "home": entry.pw_dir, "shell": entry.pw_shell,
            "comment": entry.pw_gecos, "password": None if shadow is None else shadow.get(name)}


def group_state(name: str) -> dict | None:
    try:
        return {"gid": grp.getgrnam(name).gr_gid}
    except KeyError:
        return None


def find_files(paths: list[str], patterns: list[str], depth: int) -> list[dict]:
    """Entries under `paths` down to `depth` levels (1 = a path's own entries) whose name matches one of
    `patterns`, as {path, isreg}, sorted by path. As ansible.builtin.find with file_type=any: hidden names
    (.name) are not listed, links are listed and never followed."""
    found: dict[str, dict] = {}

    def visit(directory: str, level: int) -> None:
        try:
            entries = list(os.scandir(directory))
        except OSError:  # missing, not a directory, unreadable: nothing listed
            return
        for entry in entries:
            if not entry.name.startswith(".") and any(fnmatch.fnmatch(entry.name, p) for p in patterns):
                found[entry.path] = {"path": entry.path, "isreg": entry.is_file(follow_symlinks=False)}
            if level < depth and entry.is_dir(follow_symlinks=False):
                visit(entry.path, level + 1)

    for top in paths:
        visit(top.rstrip("/") or "/", 1)
    return [found[path] for path in sorted(found)]


# package_state's options; host_read's package_state items take the same (plus `layer`).
PACKAGE_STATE_SPEC = {
    "names": {"type": "list", "elements": "str", "required": True},
    "services": {"type": "list", "elements": "str", "default": []},
    "users": {"type": "list", "elements": "str", "default": []},
    "groups": {"type": "list", "elements": "str", "default": []},
    "files": {"type": "dict", "options": {
        "paths": {"type": "list", "elements": "path", "required": True},
        "patterns": {"type": "list", "elements": "str", "required": True},
        "depth": {"type": "int", "default": 1}}},
    "stat": {"type": "dict", "options": {
        "paths": {"type": "list", "elements": "path", "default": []},
        "trees": {"type": "list", "elements": "path", "default": []},
        "types": {"type": "list", "elements": "path", "default": []},
        "secret_paths": {"type": "list", "elements": "path", "default": []},
        "key": {"type": "str", "no_log": True}}},
    "checkout": {"type": "dict", "options": CHECKOUT_SPEC},
    "tls_selfsigned": {"type": "dict", "options": SELFSIGNED_SPEC},
    "htpasswd": {"type": "dict", "options": HTPASSWD_SPEC},
}


def read_packages(module, params: dict, shadow_reader=read_shadow, where: str = "") -> dict:
    """package_state's answer for `params` (validated by PACKAGE_STATE_SPEC); fails the module on a
    package name with a version or pattern (`where` prefixes the message: which read)."""
    names = params["names"]
    bad = bad_names(names)
    if bad:
        module.fail_json(msg=f"{where}names must be plain package names without versions or patterns: {bad}")
    missing, tool = missing_packages(module, names)
    services: dict[str, dict[str, str]] = {}
    units = params["services"]
    if units:
        systemctl = module.get_bin_path("systemctl")
        out = ""
        if systemctl:
            # One block per unit, in the order given; a unit systemd does not know still gets a block.
            _, out, _ = module.run_command([systemctl, "show", "-p", "ActiveState", "-p", "UnitFileState", "--", *units])
        services = unit_states(out, units)
    shadow_text = shadow_reader() if params["users"] else None
    shadow = None if shadow_text is None else shadow_fields(shadow_text)
    result = {"missing": missing, "tool": tool, "services": services,
              "users": {name: user_state(name, shadow) for name in params["users"]},
              "groups": {name: group_state(name) for name in params["groups"]}}
    if params["files"]:
        spec = params["files"]
        result["files"] = find_files(spec["paths"], spec["patterns"], max(1, spec["depth"]))
    if params["stat"]:
        spec = params["stat"]
        result["stat"] = {**{path: path_type(path) for path in spec["types"]},
                          **{path: path_state(path) for path in spec["paths"]},
                          **{path: tree_state(path) for path in spec["trees"]},
                          **({path: path_state(path, spec["key"]) for path in spec["secret_paths"]}
                             if spec["key"] else {})}
    checkout = params["checkout"]
    if checkout:
        read = read_checkout(module, checkout)
        result["checkout"] = None if read["why"] == GIT_MISSING else read
    tls = params["tls_selfsigned"]
    if tls:
        result["tls_selfsigned"] = None if cryptography_missing() else read_selfsigned(tls)
    ht = params["htpasswd"]
    if ht:
        result["htpasswd_settled"] = htpasswd_settled(ht["path"], ht["users"], ht["hash_scheme"], ht["owner"],
                                                      ht["group"], ht["mode"])
    return result
