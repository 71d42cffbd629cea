"""os_firewall, checked from the controller against the real container.

Shared by the scenarios firewall_ufw, firewall_firewalld and firewall_nftables
(the backend is the part of the scenario name after `firewall_`). The traffic
checks open real TCP connections from the controller to the container's
address; the port-change and bad-input checks re-run converge.yml with
ansible-playbook against molecule's inventory, as the conventions ask.

prepare.yml started HTTP listeners on 7860 (the service port), 7861 (the port
the change test switches to) and 9999 (listening, never allowed).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

SCENARIO = os.environ.get("MOLECULE_SCENARIO_NAME", "firewall_ufw")
BACKEND = SCENARIO.removeprefix("firewall_")
PLAYBOOKS = Path(__file__).resolve().parents[1]
INVENTORY = str(Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent) if "MOLECULE_INVENTORY_FILE" in os.environ else ""
SERVICE_PORT = 7860
NEW_PORT = 7861
CLOSED_PORT = 9999
SSH_PORT = 22
TIMEOUT = 1.0  # the container is on the local bridge: an answer takes milliseconds

# The read-only commands that show everything the backend enforces.
RULESET_COMMANDS = {
    "ufw": "ufw status verbose; cat /etc/ufw/user.rules /etc/ufw/user6.rules",
    "firewalld": (
        "firewall-cmd --list-all; firewall-cmd --permanent --list-all; cat /etc/firewalld/services/os-firewall-*.xml"
    ),
    "nftables": "nft list ruleset; cat /etc/nftables.d/os_firewall.nft",
}


def _ansible_playbook() -> str:
    local = Path(sys.executable).parent / "ansible-playbook"
    return str(local) if local.exists() else (shutil.which("ansible-playbook") or "ansible-playbook")


def run_playbook(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run one of the scenario's playbooks against molecule's inventory."""
    assert INVENTORY, "MOLECULE_INVENTORY_FILE is not set: run these tests through molecule"
    cmd = [_ansible_playbook(), "-i", INVENTORY, str(PLAYBOOKS / name), *args]
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False, env=env)


def converge(extra: dict[str, Any] | None = None, *args: str) -> subprocess.CompletedProcess[str]:
    options = ["-e", json.dumps(extra)] if extra else []
    return run_playbook("converge.yml", *options, *args)


def ports(*numbers: int) -> dict[str, Any]:
    return {"os_firewall_allowed_ports": [{"port": n, "proto": "tcp", "purpose": "app"} for n in numbers]}


def answers(address: str, port: int) -> bool:
    """True when an HTTP request from the controller to address:port gets an HTTP answer."""
    try:
        with socket.create_connection((address, port), timeout=TIMEOUT) as conn:
            conn.settimeout(TIMEOUT)
            conn.sendall(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n")
            return conn.recv(16).startswith(b"HTTP/")
    except OSError:
        return False


def recap_changed(output: str) -> int:
    """The changed= count of the single host in a PLAY RECAP."""
    for line in output.splitlines():
        if "changed=" in line and "ok=" in line:
            return int(line.split("changed=")[1].split()[0])
    raise AssertionError(f"no PLAY RECAP in:\n{output}")


@pytest.fixture(scope="module")
def address(host: Any) -> str:
    """The container's IPv4 address on the docker bridge."""
    found = host.check_output("ip -4 -o addr show scope global").split()
    return str(found[found.index("inet") + 1].split("/")[0])


@pytest.fixture
def ruleset(host: Any) -> Any:
    """A function returning everything the firewall currently enforces (text)."""
    return lambda: host.check_output(RULESET_COMMANDS[BACKEND])


@pytest.fixture(scope="module")
def status() -> Iterator[Any]:
    """os_firewall_state as tasks/status.yml reports it right now."""

    def read() -> dict[str, Any]:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "state.json"
            result = run_playbook("status.yml", "-e", f"status_out={out}")
            assert result.returncode == 0, result.stdout + result.stderr
            state: dict[str, Any] = json.loads(out.read_text())
            return state

    yield read


def test_listeners_run(host: Any) -> None:
    """The closed-port checks mean something only if the ports really listen inside."""
    listening = host.check_output("ss -Hltn")
    for port in (SERVICE_PORT, NEW_PORT, CLOSED_PORT):
        assert f":{port} " in listening, listening


def test_service_port_answers_from_controller(address: str) -> None:
    assert answers(address, SERVICE_PORT)


def test_other_listening_ports_do_not_answer(address: str) -> None:
    assert not answers(address, CLOSED_PORT)
    assert not answers(address, NEW_PORT)


def test_ssh_port_rule_exists(host: Any) -> None:
    if BACKEND == "ufw":
        rules = host.check_output("ufw status verbose")
        assert "Status: active" in rules
        assert any(
            line.startswith("22/tcp ") and "ALLOW IN" in line and "# os_firewall: admin" in line
            for line in rules.splitlines()
        ), rules
    elif BACKEND == "firewalld":
        assert "os-firewall-admin" in host.check_output("firewall-cmd --list-services").split()
        assert "22/tcp" in host.check_output("firewall-cmd --info-service=os-firewall-admin")
        assert host.service("firewalld").is_enabled
    else:
        chain = host.check_output("nft list chain inet os_firewall input")
        assert "policy drop;" in chain
        assert 'tcp dport 22 accept comment "os_firewall: admin"' in chain
        assert host.service("nftables").is_enabled


def test_only_labelled_rules_and_default_deny(host: Any) -> None:
    """Default incoming policy is deny; the ruleset loads at boot."""
    if BACKEND == "ufw":
        assert "Default: deny (incoming)" in host.check_output("ufw status verbose")
        assert "ENABLED=yes" in host.check_output("cat /etc/ufw/ufw.conf")
    elif BACKEND == "firewalld":
        zone = host.check_output("firewall-cmd --get-default-zone")
        assert host.check_output(f"firewall-cmd --permanent --zone={zone} --get-target") in (
            "default",
            "DROP",
            "REJECT",
            "%%REJECT%%",
        )
    else:
        assert 'include "/etc/nftables.d/os_firewall.nft"' in host.check_output("cat /etc/nftables.conf")
        host.run_expect([0], "nft -c -f /etc/nftables.conf")


def test_status_reports_the_backend_and_ports(status: Any) -> None:
    state = status()
    assert state["backend"] == BACKEND
    assert state["active"] is True
    assert state["managed"] is True
    by_port = {entry["port"]: entry for entry in state["ports"]}
    assert by_port[SSH_PORT]["allowed"] is True and by_port[SSH_PORT]["scope"] == "any", by_port[SSH_PORT]
    assert by_port[SERVICE_PORT]["allowed"] is True and by_port[SERVICE_PORT]["scope"] == "any", by_port[SERVICE_PORT]
    assert by_port[NEW_PORT]["allowed"] is False, by_port[NEW_PORT]
    assert by_port[CLOSED_PORT]["allowed"] is False, by_port[CLOSED_PORT]
    assert {"port": SERVICE_PORT, "proto": "tcp"} in state["allowed_ports"]


def test_check_mode_previews_a_port_change_without_making_it(address: str, ruleset: Any) -> None:
    before = ruleset()
    result = converge(ports(NEW_PORT), "--check", "--diff")
    assert result.returncode == 0, result.stdout + result.stderr
    assert recap_changed(result.stdout) > 0, "check mode should report the pending port change"
    assert ruleset() == before
    assert answers(address, SERVICE_PORT)
    assert not answers(address, NEW_PORT)


def test_port_change_closes_the_old_port_and_opens_the_new_one(address: str, ruleset: Any) -> None:
    try:
        result = converge(ports(NEW_PORT))
        assert result.returncode == 0, result.stdout + result.stderr
        assert answers(address, NEW_PORT), "the new port must answer"
        assert not answers(address, SERVICE_PORT), "the old port must be closed"
        assert not answers(address, CLOSED_PORT)
        assert str(SERVICE_PORT) not in ruleset(), "no rule for the old port may remain"
    finally:
        restored = converge()
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert answers(address, SERVICE_PORT)
    assert not answers(address, NEW_PORT)


BAD_INPUT = {
    "port-out-of-range": (ports(70000), "os_firewall_allowed_ports"),
    "invalid-cidr": ({"os_firewall_allowed_cidrs": ["10.0.0.300/8"]}, "os_firewall_allowed_cidrs"),
    "unknown-backend": ({"os_firewall_backend": "iptables"}, "os_firewall_backend"),
}


def test_bad_input_fails_before_any_change(ruleset: Any) -> None:
    """Each bad value fails the run, names its variable, and leaves the ruleset as it was.

    The three runs go in parallel: each one stops right after gathering facts.
    """
    before = ruleset()
    with ThreadPoolExecutor(max_workers=len(BAD_INPUT)) as pool:
        results = dict(zip(BAD_INPUT, pool.map(lambda case: converge(case[0]), BAD_INPUT.values()), strict=True))
    for name, result in results.items():
        output = result.stdout + result.stderr
        variable = BAD_INPUT[name][1]
        assert result.returncode != 0, f"{name}: {output}"
        assert variable in output, f"{name}: {output}"
        assert recap_changed(output) == 0, f"{name}: {output}"
    assert ruleset() == before


# Rules another tool puts in front of the managed firewall: an operator's `iptables -I` on the
# ufw host (iptables-nft there), a table of its own on the nftables/firewalld hosts (no iptables).
if BACKEND == "ufw":
    FOREIGN_DROP = f"iptables -I INPUT -p tcp --dport {SERVICE_PORT} -j DROP"
    FOREIGN_SSH = f"iptables -I INPUT -p tcp -m multiport --dports {SSH_PORT},{SERVICE_PORT} -j REJECT"
    CLEANUP = [f"iptables -D INPUT -p tcp --dport {SERVICE_PORT} -j DROP",
               f"iptables -D INPUT -p tcp -m multiport --dports {SSH_PORT},{SERVICE_PORT} -j REJECT"]
    LIST_FOREIGN = "iptables -S INPUT"
else:
    _TABLE = "nft add table ip foreign; nft add chain ip foreign input '{ type filter hook input priority -5; }'"
    FOREIGN_DROP = f"{_TABLE}; nft insert rule ip foreign input tcp dport {SERVICE_PORT} drop"
    FOREIGN_SSH = f"{_TABLE}; nft add rule ip foreign input tcp dport '{{ {SSH_PORT}, {SERVICE_PORT} }}' reject"
    CLEANUP = ["nft delete table ip foreign"]
    LIST_FOREIGN = "nft list table ip foreign 2>/dev/null || true"


def _flat(result: subprocess.CompletedProcess[str]) -> str:
    return " ".join((result.stdout + result.stderr).split())


@pytest.fixture(scope="module")
def nft_tool(host: Any) -> None:
    """Debian's firewalld uses libnftables without the nft tool; another tool's rules need it (test only)."""
    if BACKEND != "ufw":
        host.run_expect([0], "command -v nft || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nftables")


def test_foreign_rule_is_reported_with_the_command_that_removes_it(host: Any, address: str, nft_tool: None) -> None:
    """Default os_firewall_foreign_rules=report: the run fails naming the rule; its command works."""
    host.run_expect([0], FOREIGN_DROP)
    try:
        assert not answers(address, SERVICE_PORT), "the foreign rule must really drop the port"
        check = _flat(converge(None, "--check", "--diff"))
        result = converge()
        out = _flat(result)
        assert result.returncode != 0, out
        assert f"rule(s) outside the {BACKEND} configuration block allowed ports" in check, check
        assert f"rule(s) outside the {BACKEND} configuration block allowed ports" in out, out
        assert f"[{SERVICE_PORT}/tcp ipv4: `" in out, out
        command = out.split("remove it with: ", 1)[1].split("]", 1)[0].strip()
        host.run_expect([0], command)  # the fix the message gives
        assert answers(address, SERVICE_PORT)
        again = converge()
        assert again.returncode == 0 and recap_changed(again.stdout) == 0, _flat(again)
    finally:
        for command in CLEANUP:
            host.run(command)


def test_foreign_rule_removed_when_asked_and_ssh_rules_left_alone(host: Any, address: str, nft_tool: None) -> None:
    host.run_expect([0], FOREIGN_SSH)
    host.run_expect([0], FOREIGN_DROP)  # in front of the REJECT
    try:
        result = converge({"os_firewall_foreign_rules": "remove"})
        out = _flat(result)
        rules = host.check_output(LIST_FOREIGN)
        assert f"dport {SERVICE_PORT} drop" not in rules and f"--dport {SERVICE_PORT} -j DROP" not in rules, rules
        # The rule that also matches SSH is never removed: the run fails naming it instead.
        assert str(SSH_PORT) in rules, rules
        assert result.returncode != 0, out
        assert "remove it with: by hand (" in out, out
    finally:
        for command in CLEANUP:
            host.run(command)
    assert answers(address, SERVICE_PORT)
    again = converge()
    assert again.returncode == 0 and recap_changed(again.stdout) == 0, _flat(again)
