#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cosyvoice-deploy maintainers
# Apache License 2.0
"""Read-only checks of a service the way its users reach it: TCP, HTTP(S), login, ports that must be closed."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: client_probe
short_description: Check a service from a client's side (TCP, HTTP(S), login, closed ports) in one run
description:
  - The checks the C(cosyvoice.deploy.verify) role makes from the controller (or, for a fleet's backend,
    from its front proxy host), in one module run instead of one per request. Nothing is changed anywhere.
  - A TCP connection to each of O(tcp_ports) on O(address), retried until O(connect_timeout) passes
    (as C(ansible.builtin.wait_for) with C(state=started)).
  - A GET of O(url) without credentials, with the certificate verified against O(ca_path) (or the system
    CAs) when O(validate_certs); redirects of GET requests are followed. When a TCP connection already failed
    the request waits only O(connect_timeout), since only the kind of error is wanted.
  - With O(login=gradio) a form login (POST O(login_url), C(username), C(password), no redirects) and, with its
    cookie, a GET of O(authed_url); with O(login=basic) a GET of O(authed_url) with HTTP basic auth. Both only
    when the request without credentials got an HTTP answer.
  - A connection to each of O(exposure_ports) (parallel), ports that must not answer users. Each gets
    ten times the time the first connection to a public port took (at least 0.25 s, at most 1 s; 1 s when
    no public port answered, RV(silence_wait)), since an open or closed port answers within one round trip.
  - O(closed_port) must not accept a connection (retried for 2 s, as C(wait_for) with C(state=stopped)).
  - The ports that must not answer are tried alongside the users' requests (a dropped one costs its
    timeout once, not on top of them).
  - "The HTTP requests are made with Ansible's own C(fetch_url) (as C(ansible.builtin.uri) makes them), so
    errors read the same (C(Request failed: <urlopen error ...>), C(HTTP Error 401: Unauthorized)).
    No proxy from the environment is used."
version_added: "1.9.0"
author:
  - cosyvoice-deploy maintainers
options:
  address:
    description: Host name or address the TCP checks connect to.
    type: str
    default: ""
  tcp_ports:
    description: TCP ports on O(address) that must accept a connection.
    type: list
    elements: int
    default: []
  connect_timeout:
    description: Seconds to keep trying each TCP connection (and the request without credentials after one failed).
    type: float
    default: 3
  url:
    description: URL users open, asked without credentials. Empty skips the HTTP checks.
    type: str
    default: ""
  http_timeout:
    description: Seconds for one HTTP request.
    type: float
    default: 15
  validate_certs:
    description: Verify the HTTPS certificate.
    type: bool
    default: true
  ca_path:
    description: PEM file of the CA(s) to verify the certificate against instead of the system CAs.
    type: path
  login:
    description:
      - V(none) - no login. V(gradio) - Gradio's form login at O(login_url), then O(authed_url) with its cookie.
        V(basic) - O(authed_url) with HTTP basic auth (nginx).
    type: str
    choices: [none, gradio, basic]
    default: none
  login_url:
    description: Gradio's login endpoint (C(<url>login)).
    type: str
    default: ""
  authed_url:
    description: URL asked with the credentials.
    type: str
    default: ""
  username:
    description: User for the login.
    type: str
    default: ""
  password:
    description: Password for the login.
    type: str
    default: ""
  exposure_ports:
    description: Ports on O(address) that should not answer; each is tried once, in parallel, 1 s each.
    type: list
    elements: int
    default: []
  closed_port:
    description: A port on O(address) that must refuse or drop connections (a proxy's backend). V(0) skips it.
    type: int
    default: 0
notes:
  - Check mode runs the checks for real (they only read).
"""

EXAMPLES = r"""
- name: Check the service the way users reach it
  cosyvoice.deploy.client_probe:
    address: 203.0.113.10
    tcp_ports: [7860]
    url: http://203.0.113.10:7860/config
    login: gradio
    login_url: http://203.0.113.10:7860/login
    authed_url: http://203.0.113.10:7860/config
    username: admin
    password: "{{ vault_password }}"
  delegate_to: localhost
  become: false
  register: client
"""

RETURN = r"""
tcp:
  description: One entry per port of O(tcp_ports); C(rtt) is the time of the connection that worked.
  returned: always
  type: list
  elements: dict
  sample: [{"port": 7860, "ok": false, "msg": "<urlopen error [Errno 111] Connection refused>", "elapsed": 3.0}]
http:
  description:
    - The request without credentials - C(status) (V(-1) without an HTTP answer), C(msg) (as C(uri) words it),
      C(url) (after redirects), C(location) (a redirect not followed), C(elapsed). Empty without O(url).
  returned: always
  type: dict
  sample: {"status": 401, "msg": "HTTP Error 401: Unauthorized", "url": "http://203.0.113.10:7860/config",
           "elapsed": 0}
login:
  description: Gradio's login request - C(status), C(msg) (never the form data or the cookie). Empty when not made.
  returned: always
  type: dict
authed:
  description: The request with the credentials - C(status), C(msg). Empty when not made.
  returned: always
  type: dict
exposed:
  description: O(exposure_ports) -> V(open), V(refused), V(timeout) or V(error).
  returned: always
  type: dict
  sample: {"8000": "open"}
closed:
  description: O(closed_port) - C(port), C(reachable) (it accepted connections for 2 s), C(msg). Empty when skipped.
  returned: always
  type: dict
silence_wait:
  description: Seconds each try of O(exposure_ports) and O(closed_port) waited for an answer.
  returned: always
  type: float
  version_added: "1.13.0"
"""

import base64
import socket
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlencode

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import fetch_url

from ansible_collections.cosyvoice.deploy.plugins.module_utils.health import (
    ERROR, REFUSED, TIMEOUT, classify_exception)

ARGUMENT_SPEC: dict[str, Any] = {
    "address": {"type": "str", "default": ""},
    "tcp_ports": {"type": "list", "elements": "int", "default": []},
    "connect_timeout": {"type": "float", "default": 3},
    "url": {"type": "str", "default": ""},
    "http_timeout": {"type": "float", "default": 15},
    "validate_certs": {"type": "bool", "default": True},
    "ca_path": {"type": "path"},
    "login": {"type": "str", "choices": ["none", "gradio", "basic"], "default": "none"},
    "login_url": {"type": "str", "default": ""},
    "authed_url": {"type": "str", "default": ""},
    "username": {"type": "str", "default": ""},
    "password": {"type": "str", "default": "", "no_log": True},
    "exposure_ports": {"type": "list", "elements": "int", "default": []},
    "closed_port": {"type": "int", "default": 0},
}

CLOSED_WAIT_S = 2.0
# How long a port that must not answer is given to answer: a SYN-ACK (or a reset) comes back within one
# round trip, so after a public port was reached the wait is that connect's time x SILENCE_RTT_FACTOR, kept
# between SILENCE_MIN_S and EXPOSURE_TIMEOUT_S (nmap scales its timeouts the same way); 1 s without a sample.
EXPOSURE_TIMEOUT_S = 1.0
SILENCE_MIN_S = 0.25
SILENCE_RTT_FACTOR = 10
RETRY_PAUSE_S = 0.5
# What of fetch_url's answer the result keeps (never cookies, headers with secrets, or bodies).
_KEEP = ("status", "msg", "url", "location", "elapsed")


def connect_once(address: str, port: int, timeout: float) -> tuple[str, str]:
    """One TCP connection -> ('open', '') or (outcome, error text), the outcome named as
    module_utils/health.py names a failed connection (refused, timeout, unreachable, error)."""
    try:
        socket.create_connection((address, port), timeout=timeout).close()
        return "open", ""
    except OSError as exc:
        return classify_exception(exc)[0], str(exc) or type(exc).__name__


def tcp_check(address: str, port: int, timeout: float) -> dict[str, Any]:
    """Connect until it works or `timeout` passes (wait_for state=started); msg names the last failure."""
    start = time.monotonic()
    deadline = start + timeout
    while True:
        left = max(deadline - time.monotonic(), 0.1)
        tried = time.monotonic()
        state, error = connect_once(address, port, min(left, timeout))
        if state == "open":
            return {"port": port, "ok": True, "msg": "", "elapsed": round(time.monotonic() - start, 3),
                    "rtt": round(time.monotonic() - tried, 4)}
        if time.monotonic() + RETRY_PAUSE_S >= deadline:
            break
        time.sleep(RETRY_PAUSE_S)
    reason = {REFUSED: "Connection refused", TIMEOUT: "timed out"}.get(state, error)
    return {"port": port, "ok": False, "elapsed": round(time.monotonic() - start, 3),
            "msg": f"Timeout when waiting for {address}:{port} ({reason})"}


def silence_wait(tcp: list[dict[str, Any]]) -> float:
    """How long a must-not-answer port gets (see SILENCE_RTT_FACTOR), from the public ports' first connects."""
    samples = [t["rtt"] for t in tcp if t.get("ok") and t.get("rtt") is not None]
    if not samples:
        return EXPOSURE_TIMEOUT_S
    return round(min(EXPOSURE_TIMEOUT_S, max(SILENCE_MIN_S, SILENCE_RTT_FACTOR * max(samples))), 3)


def exposure(address: str, ports: list[int], wait: float = EXPOSURE_TIMEOUT_S) -> dict[str, str]:
    """Each port tried once, in parallel, for `wait` seconds: open | refused | timeout | error."""
    if not ports:
        return {}

    def one(port: int) -> str:
        state = connect_once(address, port, wait)[0]
        return state if state in ("open", REFUSED, TIMEOUT) else ERROR

    with ThreadPoolExecutor(max_workers=min(16, len(ports))) as pool:
        return dict(zip(map(str, ports), pool.map(one, ports)))


def closed_check(address: str, port: int, wait: float = EXPOSURE_TIMEOUT_S) -> dict[str, Any]:
    """The port must stop accepting connections within 2 s (wait_for state=stopped); each try waits `wait`."""
    deadline = time.monotonic() + CLOSED_WAIT_S
    while True:
        if connect_once(address, port, wait)[0] != "open":
            return {"port": port, "reachable": False, "msg": ""}
        if time.monotonic() >= deadline:
            return {"port": port, "reachable": True,
                    "msg": f"Timeout when waiting for {address}:{port} to stop (it accepts connections)"}
        time.sleep(RETRY_PAUSE_S)


class RequestFailed(Exception):
    """fetch_url gave up on a request with fail_json (e.g. a malformed URL)."""


class _Client:
    """What fetch_url reads of a module, per request: its own settings, and fail_json raising instead of
    ending the module run (one failed request is a result, the other checks still run)."""

    def __init__(self, module: Any, follow: str) -> None:
        self.params = {**module.params, "follow_redirects": follow}
        # fetch_url points tempfile at this; the system's is where it already points (no module tmpdir made).
        self.tmpdir = tempfile.gettempdir()

    def fail_json(self, **kwargs: Any) -> None:
        raise RequestFailed(str(kwargs.get("msg") or "request failed"))


def request(module: Any, url: str, timeout: float, method: str = "GET", data: Any = None,
            headers: dict[str, str] | None = None, follow: str = "safe") -> tuple[dict[str, Any], str]:
    """One request as ansible.builtin.uri makes it -> (kept fields, cookies string)."""
    start = time.monotonic()
    try:
        resp, info = fetch_url(_Client(module, follow), url, data=data, headers=headers, method=method,
                               use_proxy=False, timeout=timeout, ca_path=module.params["ca_path"])
    except (RequestFailed, ValueError) as exc:  # fetch_url's fail_json, or a URL it cannot parse
        return {"status": -1, "msg": str(exc), "url": url, "elapsed": int(time.monotonic() - start)}, ""
    try:
        if resp is not None:
            resp.read()
    except OSError as exc:  # the body did not come: the status alone is not an answer users get
        info.update(status=-1, msg=f"Connection failure: {exc}")
    finally:
        if resp is not None:
            resp.close()
    info["elapsed"] = int(time.monotonic() - start)
    return {k: info[k] for k in _KEEP if k in info}, str(info.get("cookies_string") or "")


def probe(module: Any) -> dict[str, Any]:
    p = module.params
    address = p["address"]
    tcp = [tcp_check(address, port, p["connect_timeout"]) for port in p["tcp_ports"]]
    wait = silence_wait(tcp)
    # The ports that must not answer are tried alongside the users' requests: a port that a
    # firewall drops costs its wait once, not on top of the requests.
    with ThreadPoolExecutor(max_workers=2) as background:
        exposed = background.submit(exposure, address, p["exposure_ports"], wait)
        closed = background.submit(closed_check, address, p["closed_port"], wait) if p["closed_port"] else None
        result = client_checks(module, tcp)
        result.update(changed=False, exposed=exposed.result(), closed=closed.result() if closed else {},
                      silence_wait=wait)
    return result


def client_checks(module: Any, tcp: list[dict[str, Any]]) -> dict[str, Any]:
    """The public ports' TCP results, the URL without credentials, then the login (only after an HTTP answer)."""
    p = module.params
    result: dict[str, Any] = {"tcp": tcp, "http": {}, "login": {}, "authed": {}}
    if not p["url"]:
        return result
    tcp_failed = any(not t["ok"] for t in tcp)
    http, _ = request(module, p["url"], p["connect_timeout"] if tcp_failed else p["http_timeout"])
    result["http"] = http
    answered = int(http.get("status", -1)) > 0
    if answered and p["login"] == "gradio" and p["username"]:
        form = urlencode({"username": p["username"], "password": p["password"]})
        login, cookies = request(module, p["login_url"], p["http_timeout"], method="POST", data=form,
                                 headers={"Content-Type": "application/x-www-form-urlencoded"}, follow="none")
        result["login"] = _status(login)
        authed, _ = request(module, p["authed_url"], p["http_timeout"], headers={"Cookie": cookies})
        result["authed"] = _status(authed)
    elif answered and p["login"] == "basic" and p["username"]:
        token = base64.b64encode(f"{p['username']}:{p['password']}".encode()).decode("ascii")
        authed, _ = request(module, p["authed_url"], p["http_timeout"], headers={"Authorization": f"Basic {token}"})
        result["authed"] = _status(authed)
    return result


def _status(answer: dict[str, Any]) -> dict[str, Any]:
    """What the diagnosis reads of a login request: its status and message."""
    return {k: answer[k] for k in ("status", "msg") if k in answer}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    module.exit_json(**probe(module))


if __name__ == "__main__":
    main()
