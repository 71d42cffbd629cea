"""What keeps a long-running WebUI bounded and self-contained (stdlib only, unit-testable).

* ``prune_cache``: Gradio keeps every uploaded prompt and every generated WAV in its cache
  (GRADIO_TEMP_DIR) forever; this deletes files past an age and past a count, oldest first.
* ``strip_external_assets`` + ``SelfContainedPage``: Gradio 5.4's page template preconnects to
  fonts.googleapis.com/fonts.gstatic.com and loads a script from cdnjs.cloudflare.com. Where
  those hosts are blocked or slow (mainland China, air-gapped sites) the UI loads slowly or
  partly, and every page view tells third parties who uses the service. The middleware
  removes those tags from the HTML the service sends (the theme uses system fonts).
* ``forget_finished_events`` + ``forget_deleted_temp_files``: Gradio 5.4's queue keeps every
  event it ever ran (the Event with its request and payload, and an analytics record) and every
  temp file path it ever wrote, for the life of the process: about 17 kB of memory per request,
  measured by ``scripts/loadtest soak``. These drop what is finished and gone.
* ``ForwardedHost``: Gradio builds file URLs from the request; with root path "/" it needs
  either root_path="/" (which makes FastAPI answer "/" with 307 -> "//", and every asset then
  loads from "//assets/...") or a forwarded host. The middleware supplies the host the
  client used, so the app is mounted without a root path and URLs have single slashes.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import stat
import time
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("cosyvoice_launcher")

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# A file younger than this is never pruned: a client may still be fetching it.
MIN_AGE_S = 60.0


def prune_cache(root: str | os.PathLike[str], max_files: int, max_age_s: float,
                now: float | None = None, min_age_s: float = MIN_AGE_S) -> tuple[int, int]:
    """Delete files under `root` older than max_age_s, then the oldest beyond max_files.

    Returns (deleted, kept). Empty directories left behind are removed too.
    """
    base = str(root)
    if not os.path.isdir(base):
        return 0, 0
    now = time.time() if now is None else now
    files = []
    directories = []
    # os.walk, not Path.rglob: a directory that vanishes meanwhile (Gradio's own sweep,
    # another pass) is skipped instead of raising.
    for current, dirs, names in os.walk(base):
        directories.extend(os.path.join(current, d) for d in dirs)
        for name in names:
            path = os.path.join(current, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                files.append((st.st_mtime, path))
    files.sort(reverse=True)  # newest first
    deleted = 0
    for index, (mtime, path) in enumerate(files):
        age = now - mtime
        if age < min_age_s:
            continue
        if age > max_age_s or index >= max_files:
            try:
                os.unlink(path)
                deleted += 1
            except OSError:
                pass
    # Empty directories, deepest first, and only old ones: Gradio makes a directory and then
    # writes the file into it, and must not find it gone in between.
    for directory in sorted(directories, key=lambda d: d.count(os.sep), reverse=True):
        try:
            if now - os.lstat(directory).st_mtime >= min_age_s:
                os.rmdir(directory)  # only succeeds when empty
        except OSError:
            pass
    return deleted, len(files) - deleted


# Statuses Gradio's queue gives an event that will not run again (queueing.py).
FINISHED = frozenset({"success", "failed", "cancelled"})


def forget_finished_events(queue: Any, min_age_s: float = 60.0, now: float | None = None) -> int:
    """Drop finished events from Gradio's queue bookkeeping; returns how many.

    An event is dropped when its analytics record says it finished, it is older than min_age_s,
    and no session still lists it as pending (its stream has delivered the result); sessions
    with nothing pending are dropped from the pending map. Run it on
    the event loop (Gradio mutates these dicts there). Unknown Gradio internals: nothing is done.
    """
    analytics = getattr(queue, "event_analytics", None)
    events = getattr(queue, "event_ids_to_events", None)
    pending_sessions = getattr(queue, "pending_event_ids_session", None)
    if not isinstance(analytics, dict) or not isinstance(events, dict) or not isinstance(pending_sessions, dict):
        return 0
    now = time.time() if now is None else now
    pending = set().union(*pending_sessions.values()) if pending_sessions else set()
    done = [
        event_id
        for event_id, record in list(analytics.items())
        if isinstance(record, dict)
        and record.get("status") in FINISHED
        and now - float(record.get("time") or now) >= min_age_s
        and event_id not in pending
    ]
    for event_id in done:
        analytics.pop(event_id, None)
        events.pop(event_id, None)
    # Sessions with nothing pending keep an empty set forever; a new event makes a new one.
    for session_hash in [h for h, ids in list(pending_sessions.items()) if not ids]:
        pending_sessions.pop(session_hash, None)
    return len(done)


def forget_deleted_temp_files(temp_file_sets: Any) -> int:
    """Drop paths of files that no longer exist (pruned) from Gradio's temp file sets; returns how many."""
    if not isinstance(temp_file_sets, list):
        return 0
    dropped = 0
    for paths in temp_file_sets:
        if isinstance(paths, set):
            gone = {p for p in list(paths) if isinstance(p, str) and not os.path.exists(p)}
            paths.difference_update(gone)
            dropped += len(gone)
    return dropped


_EXTERNAL_TAG = re.compile(
    r"<link\b[^>]*\bhref=\"https?://[^\"]*\"[^>]*/?>\s*"
    r"|<script\b[^>]*\bsrc=\"https?://[^\"]*\"[^>]*>\s*</script>\s*",
    re.IGNORECASE | re.DOTALL,
)


def strip_external_assets(html: str) -> str:
    """The page without <link href="http(s)://..."> and <script src="http(s)://..."></script> tags."""
    return _EXTERNAL_TAG.sub("", html)


class SelfContainedPage:
    """ASGI middleware: HTML responses go out without tags that load from other hosts."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        start: Message = {}
        body = bytearray()

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers") or [])
                if not headers.get(b"content-type", b"").startswith(b"text/html"):
                    start = {"passthrough": True}
                    await send(message)
                    return
                start = message
                return
            if start.get("passthrough"):
                await send(message)
                return
            body.extend(message.get("body", b""))
            if message.get("more_body"):
                return
            page = strip_external_assets(body.decode("utf-8", "replace")).encode("utf-8")
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(page)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": page if scope.get("method") == "GET" else b""})

        await self.app(scope, receive, capture)


def _is_loopback(host: str | None) -> bool:
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


class ForwardedHost:
    """ASGI middleware: X-Forwarded-Host is the Host the client used.

    Only a proxy on this host (nginx on 127.0.0.1) may set it itself; from anyone else the
    header is replaced, so a client cannot make the app build URLs to another host.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            headers = list(scope.get("headers", []))
            client = (scope.get("client") or (None, None))[0]
            if not _is_loopback(client):  # a client's own X-Forwarded-* never count
                headers = [(k, v) for k, v in headers if k.lower() not in (b"x-forwarded-host", b"x-forwarded-proto")]
            if b"x-forwarded-host" not in {k.lower() for k, _ in headers}:
                host = next((v for k, v in headers if k.lower() == b"host"), b"")
                if host:
                    headers.append((b"x-forwarded-host", host))
            scope = {**scope, "headers": headers}
        await self.app(scope, receive, send)
