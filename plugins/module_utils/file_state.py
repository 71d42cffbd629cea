# -*- coding: utf-8 -*-
# Copyright: cosyvoice-deploy maintainers
# Apache License 2.0
"""Reading, comparing and atomically writing files on the host: shared by file_tree and host_files."""

from __future__ import annotations

import hashlib
import os
import tempfile

MAX_DIFF_BYTES = 64 * 1024


def sha256_of(path: str) -> str | None:
    """SHA-256 of a regular file's content; None when it cannot be read."""
    try:
        with open(path, "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest()
    except OSError:
        return None


def read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return b""


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
