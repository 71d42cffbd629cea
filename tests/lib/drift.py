"""Helpers for tests that break a converged host and read `ansible-playbook` output.

- `host_state()`: one snapshot of everything a run could change on the host (file
  checksums, modes and owners, unit states, firewall, listeners, packages), to prove
  that a run changed nothing.
- `Run`: an `ansible-playbook` run's output, parsed: the tasks that reported
  `changed` or `fatal`, per play, and the `--diff` of a file.
- `scan()`: a bounded TCP connect scan from the controller.

The output parser reads the default callback (ansible.cfg: `stdout_callback =
ansible.builtin.default`, profile_tasks on), with or without `-v`.
"""

from __future__ import annotations

import errno
import re
import resource
import select
import socket
import subprocess
import time
from collections import OrderedDict
from dataclasses import dataclass, field

# What a run of site.yml may touch on the host, and what shows whether it did.
# One shell round trip; sections start with "## <name>".
_STATE_SCRIPT = r"""
set -u
paths="/etc/systemd/system /etc/nginx /etc/cosyvoice /opt/cosyvoice/launcher /opt/cosyvoice/venv/.cosyvoice-requirements.json /etc/ufw /etc/default/ufw"
echo '## modes'
find $paths -xdev \( -type f -o -type l -o -type d \) -printf '%m %u:%g %p %l\n' 2>/dev/null | sort -k3
echo '## checksums'
find $paths -xdev -type f -exec sha256sum {} + 2>/dev/null | sort -k2
echo '## units'
for unit in cosyvoice.service nginx.service ufw.service cosyvoice-watchdog.timer; do
  echo "$unit $(systemctl is-active "$unit") $(systemctl is-enabled "$unit" 2>/dev/null)"
done
echo '## checkout'
git -C /opt/cosyvoice/src rev-parse HEAD 2>&1; git -C /opt/cosyvoice/src status --porcelain --untracked-files=no 2>&1
echo '## accounts'
getent passwd cosyvoice; getent group cosyvoice
echo '## firewall'
LC_ALL=C ufw status verbose 2>&1
echo '## listeners'
ss -Hltn | awk '{print $4}' | sort -u
echo '## packages'
dpkg-query -W -f '${Package} ${Version} ${db:Status-Abbrev}\n' | sort
"""


def host_state(host) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """{section: text} of the host's state (see _STATE_SCRIPT)."""
    out = host.check_output(_STATE_SCRIPT)
    sections: dict[str, list[str]] = {}
    current = "preamble"
    for line in out.splitlines():
        if line.startswith("## "):
            current = line[3:].strip()
            sections[current] = []
        else:
            sections.setdefault(current, []).append(line)
    return {name: "\n".join(lines) for name, lines in sections.items()}


def state_diff(before: dict[str, str], after: dict[str, str]) -> str:
    """Human-readable differences between two host_state() snapshots ('' when equal)."""
    import difflib

    parts: list[str] = []
    for name in sorted(set(before) | set(after)):
        a, b = before.get(name, ""), after.get(name, "")
        if a != b:
            parts.append(f"## {name}")
            parts.extend(difflib.unified_diff(a.splitlines(), b.splitlines(), "before", "after", lineterm="", n=0))
    return "\n".join(parts)


def checksums(state: dict[str, str]) -> dict[str, str]:
    """{path: sha256} from a host_state() snapshot."""
    result = {}
    for line in state.get("checksums", "").splitlines():
        digest, _, path = line.partition("  ")
        result[path] = digest
    return result


def ufw_rules(state: dict[str, str]) -> set[str]:
    """The rule lines of `ufw status verbose` (order-free: a re-added rule goes to the end)."""
    return {line.strip() for line in state.get("firewall", "").splitlines() if "ALLOW" in line or "DENY" in line}


# --------------------------------------------------------------------------- ansible-playbook output

_PLAY = re.compile(r"^PLAY \[(?P<name>.*)\] \*+\s*$")
_TASK = re.compile(r"^(?P<kind>TASK|RUNNING HANDLER) \[(?P<name>.*)\] \*+\s*$")
_RESULT = re.compile(r"^(?P<status>ok|changed|fatal|failed|skipping): \[(?P<host>[^\]]+)\]")
_RECAP = re.compile(r"^(?P<host>\S+)\s*:\s*ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)"
                    r"\s+failed=(?P<failed>\d+)")


@dataclass(frozen=True)
class TaskResult:
    play: str
    task: str  # "role : name" as the callback prints it (collection roles: "ns.coll.role : name")
    status: str  # ok | changed | fatal | failed
    line: str  # the result line, e.g. "changed: [cv-drift] => (item=443/tcp from ::/0)"


@dataclass
class Run:
    """A finished ansible-playbook run and its parsed output."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    results: list[TaskResult] = field(default_factory=list)

    @classmethod
    def of(cls, proc: subprocess.CompletedProcess[str], seconds: float) -> Run:
        run = cls([str(a) for a in proc.args], proc.returncode, proc.stdout, proc.stderr, seconds)
        run.results = parse_results(proc.stdout)
        return run

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def tail(self, chars: int = 6000) -> str:
        return self.output[-chars:]

    def changed(self) -> list[TaskResult]:
        return [r for r in self.results if r.status == "changed"]

    def changed_tasks(self) -> dict[str, list[str]]:
        """{task: [result lines]} of every task and handler that reported changed."""
        tasks: dict[str, list[str]] = {}
        for r in self.changed():
            tasks.setdefault(r.task, []).append(r.line)
        return tasks

    def ran_tasks(self) -> set[str]:
        """Tasks and handlers that ran on a host (ok or changed), not skipped."""
        return {r.task for r in self.results if r.status in ("ok", "changed")}

    def failures(self) -> list[TaskResult]:
        return [r for r in self.results if r.status in ("fatal", "failed")]

    def recap(self) -> dict[str, dict[str, int]]:
        counters: dict[str, dict[str, int]] = {}
        for line in self.stdout.split("PLAY RECAP")[-1].splitlines():
            m = _RECAP.match(line)
            if m:
                counters[m["host"]] = {k: int(v) for k, v in m.groupdict().items() if k != "host"}
        return counters

    def plays(self) -> list[str]:
        return [m["name"] for m in map(_PLAY.match, self.stdout.splitlines()) if m]

    def diff(self, path: str) -> str:
        """The --diff text of `path` ('' when the run shows none)."""
        lines = self.stdout.splitlines()
        for i, line in enumerate(lines):
            if line.startswith("--- before: ") and line[len("--- before: "):].strip() == path:
                block = []
                for follow in lines[i:]:
                    if _TASK.match(follow) or _RESULT.match(follow) or _PLAY.match(follow):
                        break
                    block.append(follow)
                return "\n".join(block)
        return ""


def parse_results(stdout: str) -> list[TaskResult]:
    """Every ok/changed/fatal/failed result line with the play and task it belongs to."""
    play = task = ""
    results = []
    for line in stdout.splitlines():
        if m := _PLAY.match(line):
            play, task = m["name"], ""
        elif m := _TASK.match(line):
            task = m["name"]
        elif (m := _RESULT.match(line)) and m["status"] in ("ok", "changed", "fatal", "failed"):
            results.append(TaskResult(play, task, m["status"], line.rstrip(" =>").rstrip()))
    return results


# --------------------------------------------------------------------------- port scan


@dataclass
class ScanResult:
    open: list[int]
    refused: list[int]  # RST: the firewall lets the packet in, nothing listens
    filtered: list[int]  # no answer within the timeout: dropped by the firewall
    errors: dict[int, str]
    seconds: float
    timeout: float
    window: int


def scan(ip: str, ports: range | list[int], timeout: float = 1.0, window: int = 4000) -> ScanResult:
    """TCP connect scan: at most `window` connects in flight, each given `timeout` seconds.

    Total time is bounded by about len(ports) / window * timeout (every port dropped).
    The soft limit on open files is raised (up to the hard limit) to fit the window.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = window + 256
    if soft != resource.RLIM_INFINITY and soft < wanted:
        soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        window = min(window, soft - 256)
    poller = select.epoll()
    pending: OrderedDict[int, tuple[socket.socket, int, float]] = OrderedDict()  # fd -> (sock, port, deadline)
    result = ScanResult([], [], [], {}, 0.0, timeout, window)
    todo = iter(ports)
    exhausted = False
    started = time.monotonic()

    def finish(sock: socket.socket, port: int, err: int) -> None:
        if err == 0:
            result.open.append(port)
        elif err == errno.ECONNREFUSED:
            result.refused.append(port)
        else:
            result.errors[port] = errno.errorcode.get(err, str(err))
        # RST instead of FIN: leaves no TIME_WAIT behind on either side.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()

    try:
        while True:
            while not exhausted and len(pending) < window:
                port = next(todo, None)
                if port is None:
                    exhausted = True
                    break
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                err = sock.connect_ex((ip, port))
                if err in (errno.EINPROGRESS, errno.EAGAIN):
                    poller.register(sock.fileno(), select.EPOLLOUT | select.EPOLLERR | select.EPOLLHUP)
                    pending[sock.fileno()] = (sock, port, time.monotonic() + timeout)
                else:
                    finish(sock, port, err)
            if not pending:
                break
            for fd, _ in poller.poll(0.05):
                sock, port, _deadline = pending.pop(fd)
                poller.unregister(fd)
                finish(sock, port, sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
            now = time.monotonic()
            while pending:
                fd, (sock, port, deadline) = next(iter(pending.items()))
                if deadline > now:
                    break
                del pending[fd]
                poller.unregister(fd)
                result.filtered.append(port)
                sock.close()
    finally:
        for sock, _port, _deadline in pending.values():
            sock.close()
        poller.close()
    result.seconds = time.monotonic() - started
    for found in (result.open, result.refused, result.filtered):
        found.sort()
    return result
