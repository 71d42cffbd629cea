"""Load a page in Debian's headless Chromium and report every request the page made.

    seen = load_page("http://172.17.0.3:7860/")
    seen.page_hosts     # hosts the page's own requests went to (document, scripts, styles, fonts, XHR)
    seen.connections    # addresses Chromium opened TCP connections to
    seen.paths          # request paths the page asked its own host for

Chromium writes a NetLog (--log-net-log); a request the page makes carries the page's origin
as its initiator, so the browser's own background traffic (update checks, sign-in) is told
apart. Nothing leaves this machine: the host resolver maps every name to "not found" except
the page's own host, so a request for fonts.googleapis.com is recorded as an attempt and
fails at once (test traffic goes only to loopback and the project's containers).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "chromium"


@dataclass
class PageLoad:
    page_hosts: set[str] = field(default_factory=set)
    connections: set[str] = field(default_factory=set)
    paths: list[str] = field(default_factory=list)
    dom: str = ""


def _events(netlog: Path) -> tuple[dict[int, str], list[dict]]:
    data = json.loads(netlog.read_text(encoding="utf-8"))
    types = {v: k for k, v in data["constants"]["logEventTypes"].items()}
    return types, data["events"]


def load_page(url: str, *, ignore_certificate_errors: bool = False, budget_ms: int = 15000,
              timeout: float = 90) -> PageLoad:
    parts = urlsplit(url)
    host = parts.hostname or ""
    origin = f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}"
    with tempfile.TemporaryDirectory(prefix="cv-browser-") as tmp:
        netlog = Path(tmp) / "net.json"
        cmd = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-default-apps", f"--user-data-dir={tmp}/profile",
               f"--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE {host}",
               f"--log-net-log={netlog}", f"--virtual-time-budget={budget_ms}", "--dump-dom", url]
        if ignore_certificate_errors:
            cmd.insert(1, "--ignore-certificate-errors")
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        types, events = _events(netlog)
    seen = PageLoad(dom=proc.stdout)
    for event in events:
        kind, params = types.get(event["type"]), event.get("params") or {}
        if kind == "URL_REQUEST_START_JOB" and params.get("url"):
            request = urlsplit(params["url"])
            if params.get("initiator") == origin or params["url"].rstrip("/") == url.rstrip("/"):
                seen.page_hosts.add(request.netloc.rsplit("@", 1)[-1])
                if request.netloc.endswith(parts.netloc.rsplit("@", 1)[-1]):
                    seen.paths.append(request.path)
        elif kind in ("TCP_CONNECT_ATTEMPT", "TCP_CONNECT"):
            address = params.get("address") or params.get("remote_address")
            if address:
                seen.connections.add(address)
    return seen
