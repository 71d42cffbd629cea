"""Bounded cache, self-contained page, forwarded host (the launcher's hygiene.py)."""

from __future__ import annotations

import asyncio
import os
import time

from cosyvoice_launcher import hygiene

# What Gradio 5.4's templates/frontend/index.html sends, abridged.
GRADIO_HEAD = """<head>
\t\t<link rel="preconnect" href="https://fonts.googleapis.com" />
\t\t<link
\t\t\trel="preconnect"
\t\t\thref="https://fonts.gstatic.com"
\t\t\tcrossorigin="anonymous"
\t\t/>
\t\t<script
\t\t\tsrc="https://cdnjs.cloudflare.com/ajax/libs/iframe-resizer/4.3.1/iframeResizer.contentWindow.min.js"
\t\t\tasync
\t\t></script>
\t\t<script type="module" crossorigin src="./assets/index-D1QgYocY.js"></script>
\t\t<link rel="stylesheet" crossorigin href="./assets/index-8mjQrEVj.css">
\t\t<meta property="og:url" content="https://gradio.app/" />
</head>"""


def test_external_tags_are_removed_and_local_ones_kept():
    out = hygiene.strip_external_assets(GRADIO_HEAD)
    assert "fonts.googleapis.com" not in out and "fonts.gstatic.com" not in out and "cdnjs" not in out
    assert '<script type="module" crossorigin src="./assets/index-D1QgYocY.js"></script>' in out
    assert '<link rel="stylesheet" crossorigin href="./assets/index-8mjQrEVj.css">' in out
    assert '<meta property="og:url" content="https://gradio.app/" />' in out  # metadata, never fetched


def _files(root, ages, now):
    for i, age in enumerate(ages):
        path = root / f"h{i}" / "audio.wav"
        path.parent.mkdir()
        path.write_bytes(b"RIFF")
        os.utime(path, (now - age, now - age))
        os.utime(path.parent, (now - age, now - age))


def test_prune_by_age_and_count_oldest_first_keeping_fresh_files(tmp_path):
    now = time.time()
    _files(tmp_path, [10, 70, 80, 90, 5000], now)  # seconds old
    deleted, kept = hygiene.prune_cache(tmp_path, max_files=2, max_age_s=3600, now=now)
    assert (deleted, kept) == (3, 2)  # 5000 s (age) + two beyond the newest two; 10 s is too fresh to count
    left = sorted(p.parent.name for p in tmp_path.rglob("*.wav"))
    assert left == ["h0", "h1"]
    # Emptied just now (their mtime is now): removed by a pass at least the grace later.
    assert len(list(tmp_path.iterdir())) == 5
    hygiene.prune_cache(tmp_path, max_files=2, max_age_s=3600, now=time.time() + 61)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h0", "h1"]


def test_prune_never_deletes_files_a_client_may_still_fetch(tmp_path):
    now = 1_000_000.0
    _files(tmp_path, [1, 2, 3], now)
    assert hygiene.prune_cache(tmp_path, max_files=1, max_age_s=60, now=now) == (0, 3)


def test_prune_keeps_a_new_empty_directory(tmp_path):
    """Gradio makes the directory, then writes the file: a fresh empty directory stays."""
    now = 1_000_000.0
    fresh, old = tmp_path / "fresh", tmp_path / "old"
    fresh.mkdir()
    old.mkdir()
    os.utime(fresh, (now - 5, now - 5))
    os.utime(old, (now - 500, now - 500))
    hygiene.prune_cache(tmp_path, max_files=1, max_age_s=3600, now=now)
    assert fresh.is_dir() and not old.exists()


def test_prune_survives_files_and_directories_vanishing_meanwhile(tmp_path, monkeypatch):
    """Found by the soak: another pass (or Gradio's sweep) removes a directory during the walk."""
    now = 1_000_000.0
    _files(tmp_path, [100, 200, 300, 400], now)
    real_walk = os.walk

    def racing_walk(top, *args, **kwargs):
        for current, dirs, names in real_walk(top, *args, **kwargs):
            if current == str(tmp_path):
                for d in ("h1", "h2"):  # gone after being listed
                    (tmp_path / d / "audio.wav").unlink()
                    (tmp_path / d).rmdir()
            yield current, dirs, names

    monkeypatch.setattr(hygiene.os, "walk", racing_walk)
    deleted, kept = hygiene.prune_cache(tmp_path, max_files=1, max_age_s=3600, now=now)
    assert (deleted, kept) == (1, 1)
    assert sorted(p.parent.name for p in tmp_path.rglob("*.wav")) == ["h0"]


def test_prune_of_a_missing_dir(tmp_path):
    assert hygiene.prune_cache(tmp_path / "nope", 1, 60) == (0, 0)


def _run(app, scope):
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def _html_app(body: bytes, content_type: bytes = b"text/html; charset=utf-8"):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body[:50], "more_body": True})
        await send({"type": "http.response.body", "body": body[50:]})
    return app


def test_middleware_rewrites_html_and_fixes_its_length():
    sent = _run(hygiene.SelfContainedPage(_html_app(GRADIO_HEAD.encode())), {"type": "http", "method": "GET"})
    start, body = sent[0], sent[1]["body"]
    assert b"cdnjs" not in body and b"./assets/index-D1QgYocY.js" in body
    assert dict(start["headers"])[b"content-length"] == str(len(body)).encode()


def test_middleware_passes_other_content_through():
    payload = b'{"url": "https://cdnjs.cloudflare.com/x.js"}' * 3
    sent = _run(hygiene.SelfContainedPage(_html_app(payload, b"application/json")), {"type": "http", "method": "GET"})
    assert b"".join(m.get("body", b"") for m in sent[1:]) == payload


def _headers_seen(client_ip, headers):
    seen = {}

    async def app(scope, receive, send):
        seen.update({k.decode(): v.decode() for k, v in scope["headers"]})

    _run(hygiene.ForwardedHost(app), {"type": "http", "method": "GET", "client": (client_ip, 50000),
                                      "headers": [(k.encode(), v.encode()) for k, v in headers.items()]})
    return seen


def test_forwarded_host_is_the_host_the_client_used():
    seen = _headers_seen("203.0.113.9", {"host": "10.0.0.5:7860"})
    assert seen["x-forwarded-host"] == "10.0.0.5:7860"


def test_a_clients_own_forwarded_headers_do_not_count():
    seen = _headers_seen("203.0.113.9", {"host": "10.0.0.5:7860", "x-forwarded-host": "evil.example",
                                         "x-forwarded-proto": "https"})
    assert seen["x-forwarded-host"] == "10.0.0.5:7860" and "x-forwarded-proto" not in seen


def test_the_local_proxys_forwarded_headers_are_kept():
    seen = _headers_seen("127.0.0.1", {"host": "127.0.0.1:7860", "x-forwarded-host": "tts.example.com",
                                       "x-forwarded-proto": "https"})
    assert seen["x-forwarded-host"] == "tts.example.com" and seen["x-forwarded-proto"] == "https"


class FakeQueue:
    """The three dicts of gradio.queueing.Queue (5.4) that forget_finished_events touches."""

    def __init__(self):
        self.event_analytics = {}
        self.event_ids_to_events = {}
        self.pending_event_ids_session = {}

    def add(self, event_id, status, age, now, session="s1", pending=False):
        self.event_analytics[event_id] = {"time": now - age, "status": status, "process_time": None,
                                          "function": "synthesize", "session_hash": session}
        self.event_ids_to_events[event_id] = object()
        if pending:
            self.pending_event_ids_session.setdefault(session, set()).add(event_id)


def test_forget_finished_events_keeps_running_recent_and_pending_ones():
    now = 1_000_000.0
    q = FakeQueue()
    q.add("done-old", "success", 120, now)
    q.add("failed-old", "failed", 120, now)
    q.add("cancelled-old", "cancelled", 120, now)
    q.add("done-recent", "success", 5, now)  # its client may still read the result
    q.add("processing", "processing", 300, now)
    q.add("queued", "queued", 300, now)
    q.add("done-but-pending", "success", 300, now, pending=True)  # the stream has not delivered it yet
    q.pending_event_ids_session["idle-session"] = set()
    assert hygiene.forget_finished_events(q, min_age_s=60, now=now) == 3
    assert sorted(q.event_ids_to_events) == sorted(q.event_analytics) == [
        "done-but-pending", "done-recent", "processing", "queued"]
    assert q.pending_event_ids_session == {"s1": {"done-but-pending"}}  # pending kept, the idle session dropped


def test_forget_finished_events_ignores_unknown_gradio_internals():
    assert hygiene.forget_finished_events(object()) == 0
    assert hygiene.forget_finished_events(None) == 0


def test_forget_deleted_temp_files(tmp_path):
    kept = tmp_path / "kept.wav"
    kept.write_bytes(b"RIFF")
    sets = [{str(kept), str(tmp_path / "pruned.wav")}, set()]
    assert hygiene.forget_deleted_temp_files(sets) == 1
    assert sets == [{str(kept)}, set()]
    assert hygiene.forget_deleted_temp_files(None) == 0
