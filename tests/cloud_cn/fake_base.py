"""What the two contract servers share: an in-memory world and a loopback HTTP server.

The fakes implement only the API actions the modules call, with each cloud's documented
request signature and error codes; the world (instances, groups, rules, tags) is plain data
the tests set up and inspect directly. Every request is logged (action, ok/error code), so
a test can assert that no write call was made.
"""

from __future__ import annotations

import itertools
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: (proto, from_port, to_port, cidr, description) - how tests compare rules.
RuleTuple = tuple[str, Any, Any, str, str]


class ApiError(Exception):
    """A documented API error: HTTP status, code, message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status, self.code, self.message = status, code, message


@dataclass
class Rule:
    proto: str  # tcp / udp / all (lower case)
    from_port: int | None
    to_port: int | None
    cidr: str
    description: str = ""
    allow: bool = True
    rule_id: str = ""

    def as_tuple(self) -> RuleTuple:
        return (self.proto, self.from_port, self.to_port, self.cidr, self.description)


@dataclass
class Group:
    id: str
    name: str
    vpc: str
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    rules: list[Rule] = field(default_factory=list)


@dataclass
class Instance:
    id: str
    vpc: str
    private_ip: str
    public_ip: str = ""
    groups: list[str] = field(default_factory=list)


class World:
    """Instances and security groups of one region of one account."""

    def __init__(self, group_prefix: str) -> None:
        self.instances: dict[str, Instance] = {}
        self.groups: dict[str, Group] = {}
        self._ids = itertools.count(1)
        self._group_prefix = group_prefix

    def new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):08x}"

    def add_group(self, name: str, vpc: str, tags: dict[str, str] | None = None, rules: list[Rule] | None = None) -> Group:
        group = Group(self.new_id(self._group_prefix), name, vpc, "", dict(tags or {}), [])
        self.groups[group.id] = group
        for rule in rules or []:
            self.add_rule(group, rule)
        return group

    def add_rule(self, group: Group, rule: Rule) -> Rule:
        rule.rule_id = rule.rule_id or self.new_id("sgr-")
        group.rules.append(rule)
        return rule

    def group(self, group_id: str) -> Group:
        return self.groups[group_id]

    def named(self, name: str) -> list[Group]:
        return [g for g in self.groups.values() if g.name == name]

    def rules(self, group_id: str) -> set[RuleTuple]:
        return {r.as_tuple() for r in self.groups[group_id].rules}


class FakeCloud:
    """A contract server on 127.0.0.1: subclasses implement ``handle``."""

    def __init__(self, world: World, credentials: dict[str, str]) -> None:
        self.world = world
        self.credentials = credentials  # access key id -> secret
        self.log: list[tuple[str, str]] = []  # (action, "ok" or error code)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeCloud:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def writes(self) -> list[str]:
        """Successful calls that change something (everything but Describe*)."""
        return [a for a, status in self.log if status == "ok" and not a.startswith("Describe")]

    def actions(self) -> list[str]:
        return [a for a, _ in self.log]

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[str, dict[str, Any]]:
        """(action, response body) or raise ApiError. Called under the lock."""
        raise NotImplementedError

    def error_body(self, err: ApiError) -> dict[str, Any]:
        raise NotImplementedError

    def _serve(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("content-length") or 0)
        body = request.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in request.headers.items()}
        action = headers.get("x-acs-action") or headers.get("x-tc-action") or "?"
        with self._lock:
            try:
                action, answer = self.handle(request.command, request.path, headers, body)
                status = 200
                self.log.append((action, "ok"))
            except ApiError as err:
                status, answer = err.status, self.error_body(err)
                self.log.append((action, err.code))
        data = json.dumps(answer).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                fake._serve(self)

            do_GET = do_POST  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
                pass

        return Handler
