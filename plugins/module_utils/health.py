# -*- coding: utf-8 -*-
# Copyright: cosyvoice-deploy maintainers
# Apache License 2.0
"""HTTP health requests and how a failed connection is named.

The host_probe module asks the health endpoint on the host itself
(probe_url); the diagnosis filter names the failures the controller saw in
uri/wait_for messages (message_kind). Both use the same outcome names.

Outcomes of probe_url, as Python 3.11's urllib reports them (seen on Debian 12):

    ok           2xx
    http_error   any other HTTP status (urllib's HTTPError), `status` set
    refused      ECONNREFUSED: nothing listens, or a REJECT rule (tcp reset)
    timeout      connect timeout: URLError(reason=TimeoutError), "<urlopen error timed out>";
                 a packet filter that DROPs looks like this.  Read timeout: a raw
                 TimeoutError "timed out" after the connection was accepted (a hung
                 process: the kernel accepts for it).  `timeout_phase` says which.
    unreachable  EHOSTUNREACH / ENETUNREACH (also an icmp REJECT: "No route to host")
    error        anything else (name resolution, reset, protocol error), with the message
"""

from __future__ import annotations

import errno
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

OK = "ok"
HTTP_ERROR = "http_error"
REFUSED = "refused"
TIMEOUT = "timeout"
UNREACHABLE = "unreachable"
ERROR = "error"
OUTCOMES = (OK, HTTP_ERROR, REFUSED, TIMEOUT, UNREACHABLE, ERROR)

PHASE_CONNECT = "connect"
PHASE_READ = "read"

_UNREACHABLE_ERRNOS = (errno.EHOSTUNREACH, errno.ENETUNREACH)
_TIMEOUT_TYPES = (TimeoutError, socket.timeout)


def classify_exception(exc: BaseException) -> tuple[str, str]:
    """A urllib failure other than HTTPError -> (outcome, timeout_phase).

    urllib wraps errors raised while connecting and sending in URLError; errors
    while reading the response come through as they are."""
    phase = PHASE_CONNECT if isinstance(exc, urllib.error.URLError) else PHASE_READ
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    code = getattr(reason, "errno", None)
    if isinstance(reason, ConnectionRefusedError) or code == errno.ECONNREFUSED:
        return REFUSED, ""
    if isinstance(reason, _TIMEOUT_TYPES) or code == errno.ETIMEDOUT:
        return TIMEOUT, phase
    if code in _UNREACHABLE_ERRNOS:
        return UNREACHABLE, ""
    return ERROR, ""


def result(url: str, outcome: str, status: int = -1, msg: str = "", timeout_phase: str = "",
           elapsed: float = 0.0) -> dict[str, Any]:
    """The probe's answer: {url, outcome, status (-1: no HTTP answer), ok (200), msg, timeout_phase, elapsed}."""
    return {"url": url, "outcome": outcome, "status": status, "ok": status == 200, "msg": msg,
            "timeout_phase": timeout_phase, "elapsed": round(elapsed, 3)}


def connect_times_out(url: str, timeout: float) -> bool:
    """True when a TCP connection to `url`'s host and port gets no answer within `timeout` seconds
    (a packet filter that drops). Any other outcome (connected, refused, ...) is False: the HTTP
    request then runs and names it."""
    parts = urllib.parse.urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "localhost", port), timeout=timeout):
            return False
    except OSError as exc:
        return classify_exception(exc)[0] == TIMEOUT


def probe_url(url: str, timeout: float, opener: Any = None, connect_timeout: float = 0) -> dict[str, Any]:
    """GET `url` without any proxy (the environment's *_proxy are ignored) and classify the outcome.

    `timeout` bounds connecting and reading each. A `connect_timeout` > 0 bounds the connection
    alone first: a dropped request then costs that, not `timeout` (the verify role's connect timeout,
    as for the requests from the controller)."""
    opener = opener or urllib.request.build_opener(urllib.request.ProxyHandler({}))
    start = time.monotonic()
    if 0 < connect_timeout < timeout and connect_times_out(url, connect_timeout):
        return result(url, TIMEOUT, -1, f"<urlopen error timed out> (no connection within {connect_timeout:g} s)",
                      PHASE_CONNECT, time.monotonic() - start)
    try:
        with opener.open(url, timeout=timeout) as resp:
            status = int(resp.status)
            outcome = OK if 200 <= status < 300 else HTTP_ERROR
            return result(url, outcome, status, str(resp.reason or "OK"), elapsed=time.monotonic() - start)
    except urllib.error.HTTPError as exc:
        exc.close()
        return result(url, HTTP_ERROR, int(exc.code), str(exc.reason), elapsed=time.monotonic() - start)
    except Exception as exc:  # pylint: disable=broad-except  # every failure is an outcome here
        outcome, phase = classify_exception(exc)
        return result(url, outcome, -1, str(exc) or type(exc).__name__, phase, time.monotonic() - start)


def message_kind(msg: Any) -> str:
    """Name a failure from its message (what uri and wait_for report on the controller):
    refused, timeout, unreachable, dns, tls or other."""
    m = str(msg or "").lower()
    if "refused" in m:
        return REFUSED
    if "timed out" in m or "timeout" in m:
        return TIMEOUT
    if "no route" in m or "unreachable" in m:
        return UNREACHABLE
    if any(x in m for x in ("name or service not known", "getaddrinfo", "nodename nor servname",
                            "temporary failure in name resolution")):
        return "dns"
    if "certificate" in m or "ssl" in m or "tls" in m:
        return "tls"
    return "other"
