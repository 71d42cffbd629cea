"""Command line and auth-file parsing for the launcher (no third-party imports)."""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

ENGINES = ("cosyvoice", "espeak")
_HOSTNAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


class ConfigError(ValueError):
    """Bad launcher configuration; the message says what to change."""


@dataclass(frozen=True)
class Config:
    host: str
    port: int
    root_path: str
    engine: str
    model_dir: str | None
    auth: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    queue_size: int = 8
    concurrency_limit: int = 1
    max_text_length: int = 2000
    espeak_voice: str = "en-us"
    fp16: bool = False
    title: str = "CosyVoice3"
    wetext_dir: str | None = None
    require_text_frontend: bool = True
    cache_max_files: int = 200
    cache_max_age_s: int = 3600
    cache_grace_s: int = 60
    session_capacity: int = 1000

    @property
    def health_path(self) -> str:
        return join_path(self.root_path, "healthz")


def normalize_root_path(value: str) -> str:
    """'' / '/' -> '/'; 'tts' / '/tts/' -> '/tts'. Rejects query strings and '..'."""
    value = (value or "/").strip()
    if any(c in value for c in "?#\\ ") or ".." in value.split("/"):
        raise ConfigError(f"--root-path {value!r}: use a plain URL path such as /tts")
    parts = [p for p in value.split("/") if p]
    return "/" + "/".join(parts) if parts else "/"


def join_path(root: str, leaf: str) -> str:
    return ("" if root == "/" else root) + "/" + leaf.lstrip("/")


def check_host(value: str) -> str:
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    if _HOSTNAME.match(value) and not re.fullmatch(r"[0-9.]+", value):
        return value
    raise ConfigError(f"--host {value!r} is neither an IP address nor a hostname (use 0.0.0.0 to listen on all IPv4 addresses)")


def check_port(value: str | int) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"--port {value!r} is not a number") from None
    if not 1 <= port <= 65535:
        raise ConfigError(f"--port {port} is outside 1-65535")
    return port


def load_auth_file(path: str | os.PathLike[str]) -> tuple[tuple[str, str], ...]:
    """Read users from a JSON file [{"name": ..., "password": ...}] that only its owner can read.

    Secrets never travel in argv (visible in `ps`) or in the environment.
    """
    p = Path(path)
    try:
        st = p.stat()
    except OSError as exc:
        raise ConfigError(f"--auth-file {p}: {exc.strerror}") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"--auth-file {p} has mode {stat.S_IMODE(st.st_mode):04o}; it must be 0600 (chmod 600 {p})")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--auth-file {p}: not valid JSON ({exc})") from None
    if not isinstance(data, list):
        raise ConfigError(f"--auth-file {p}: expected a JSON list of {{name, password}} objects")
    users: list[tuple[str, str]] = []
    for i, entry in enumerate(data):
        if not isinstance(entry, dict) or not entry.get("name") or not entry.get("password"):
            raise ConfigError(f"--auth-file {p}: entry {i} needs a non-empty name and password")
        users.append((str(entry["name"]), str(entry["password"])))
    return tuple(users)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="cosyvoice_launcher", description=__doc__)
    ap.add_argument("--host", default="127.0.0.1", help="bind address (Gradio server_name); 0.0.0.0 = all IPv4 interfaces")
    ap.add_argument("--port", default="7860", help="TCP port (Gradio server_port)")
    ap.add_argument("--root-path", default="/", help="URL sub-path the UI is served under (for a reverse proxy)")
    ap.add_argument("--engine", choices=ENGINES, default="cosyvoice")
    ap.add_argument("--model-dir", help="local model directory (engine cosyvoice)")
    ap.add_argument("--auth-file", help="JSON users file, mode 0600; no file = no login")
    ap.add_argument("--queue-size", type=int, default=8, help="requests waiting at most; more are refused")
    ap.add_argument("--concurrency-limit", type=int, default=1, help="syntheses running at once")
    ap.add_argument("--max-text-length", type=int, default=2000)
    ap.add_argument("--espeak-voice", default="en-us")
    ap.add_argument("--fp16", action="store_true", help="half precision (engine cosyvoice, GPU only)")
    ap.add_argument("--wetext-dir", help="staged wetext grammars (engine cosyvoice): no ModelScope request at start")
    ap.add_argument("--allow-no-text-frontend", action="store_true",
                    help="serve even when neither ttsfrd nor wetext loads (text is then not normalised)")
    ap.add_argument("--cache-max-files", type=int, default=200,
                    help="audio files (uploads and results) kept in Gradio's cache at most")
    ap.add_argument("--cache-max-age", type=int, default=3600, help="seconds an audio file is kept at most")
    ap.add_argument("--cache-grace", type=int, default=60,
                    help="seconds a new audio file is never deleted (its client may still be fetching it)")
    ap.add_argument("--session-capacity", type=int, default=1000,
                    help="browser sessions whose state Gradio keeps in memory (oldest dropped beyond it)")
    ap.add_argument("--title", default="CosyVoice3")
    return ap


def parse_args(argv: list[str] | None = None) -> Config:
    ns = build_parser().parse_args(argv)
    if ns.engine == "cosyvoice" and not ns.model_dir:
        raise ConfigError("--model-dir is required with --engine cosyvoice")
    for name in ("queue_size", "concurrency_limit", "max_text_length", "cache_max_files", "session_capacity"):
        if getattr(ns, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
    if not 1 <= ns.cache_grace <= ns.cache_max_age:
        raise ConfigError("--cache-grace must be at least 1 and at most --cache-max-age (seconds)")
    return Config(
        host=check_host(ns.host),
        port=check_port(ns.port),
        root_path=normalize_root_path(ns.root_path),
        engine=ns.engine,
        model_dir=ns.model_dir,
        auth=load_auth_file(ns.auth_file) if ns.auth_file else (),
        queue_size=ns.queue_size,
        concurrency_limit=ns.concurrency_limit,
        max_text_length=ns.max_text_length,
        espeak_voice=ns.espeak_voice,
        fp16=ns.fp16,
        title=ns.title,
        wetext_dir=ns.wetext_dir,
        require_text_frontend=not ns.allow_no_text_frontend,
        cache_max_files=ns.cache_max_files,
        cache_max_age_s=ns.cache_max_age,
        cache_grace_s=ns.cache_grace,
        session_capacity=ns.session_capacity,
    )
