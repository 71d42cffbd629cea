"""Unit tests for plugins/modules/os_firewall_facts.py: the probes it runs (run_command mocked with real
output from tests/unit/data/os_firewall/), the files it reads (a temporary root), and main()."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import pytest

from ansible_collections.cosyvoice.deploy.plugins.modules import os_firewall_facts as facts

DATA = Path(__file__).resolve().parent / "data" / "os_firewall"
SERVICES = ("dhcpv6-client", "os-firewall-admin", "ssh", "os-firewall-allowed", "http")
INACTIVE = (3, "inactive\n")


def sample(name: str) -> str:
    return (DATA / name).read_text()


class Exited(Exception):
    pass


class Failed(Exception):
    pass


class FakeModule:
    """run_command answers from a table keyed by the command's name and arguments; every call is kept."""

    def __init__(self, commands: dict[tuple[str, ...], tuple[int, str]], params: Optional[dict[str, Any]] = None):
        self.commands = commands
        self.binaries = {argv[0] for argv in commands}
        self.params = {"ports": [], "ssh_ports": [22], "config": [], "firewalld_zone": "", "packages": [],
                       **(params or {})}
        self.calls: list[tuple[list[str], dict[str, str]]] = []

    def get_bin_path(self, name: str) -> Optional[str]:
        return f"/usr/sbin/{name}" if name in self.binaries else None

    def run_command(self, argv: Any, environ_update: Optional[dict[str, str]] = None, **kwargs: Any):
        assert isinstance(argv, list) and not kwargs.get("use_unsafe_shell"), "commands never go through a shell"
        self.calls.append((argv, environ_update or {}))
        rc, out = self.commands.get((Path(argv[0]).name, *argv[1:]), (127, ""))
        return rc, out, ""

    def ran(self, *argv: str) -> bool:
        return any((Path(call[0]).name, *call[1:]) == argv for call, _ in self.calls)

    def fail_json(self, **kwargs: Any) -> None:
        raise Failed(kwargs)

    def exit_json(self, **kwargs: Any) -> None:
        raise Exited(kwargs)


class FakeHost(facts.Host):
    def __init__(self, module: FakeModule, root: Path, as_root: bool = True) -> None:
        super().__init__(module, str(root))
        self.as_root = as_root

    def is_root(self) -> bool:
        return self.as_root


def write(root: Path, files: dict[str, str]) -> Path:
    for path, text in files.items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return root


def ufw_host_commands() -> dict[tuple[str, ...], tuple[int, str]]:
    """ufw active with the role's rules and `iptables -I INPUT -p tcp --dport 7860 -j DROP` (see the data README)."""
    return {
        ("systemctl", "is-active", "firewalld.service"): INACTIVE,
        ("systemctl", "is-active", "nftables.service"): INACTIVE,
        ("ufw", "status", "verbose"): (0, sample("ufw_foreign_status_verbose.txt")),
        ("nft", "-j", "list", "ruleset"): (0, sample("nft_ruleset_ufw_foreign.json")),
        ("iptables-nft-save",): (0, sample("iptables_nft_save_ufw_foreign.txt")),
        ("ip6tables-nft-save",): (0, sample("ip6tables_nft_save_ufw_foreign.txt")),
        ("iptables-legacy-save",): (0, sample("iptables_legacy_save.txt")),
    }


UFW_FILES = {"/etc/ufw/user.rules": sample("ufw_foreign_user_rules.txt"), "/etc/default/ufw": "IPV6=yes\n"}


def firewalld_host_commands() -> dict[tuple[str, ...], tuple[int, str]]:
    commands = {
        ("systemctl", "is-active", "firewalld.service"): (0, "active\n"),
        ("systemctl", "is-active", "nftables.service"): INACTIVE,
        ("ip", "route", "show", "default"): (0, "default via 172.17.0.1 dev eth0 \n"),
        ("firewall-cmd", "--get-zone-of-interface=eth0"): (2, "no zone\n"),
        ("firewall-cmd", "--get-default-zone"): (0, "public\n"),
        ("firewall-cmd", "--zone=public", "--list-all"): (0, sample("firewalld_list_all_public.txt")),
        ("firewall-cmd", "--get-services"): (0, "dhcpv6-client http https os-firewall-admin os-firewall-allowed ssh\n"),
        ("nft", "-j", "list", "ruleset"): (0, sample("nft_ruleset_iptables_nft_foreign.json")),
    }
    for name in SERVICES:
        commands[("firewall-cmd", f"--info-service={name}")] = (0, sample(f"firewalld_info_service_{name}.txt"))
    return commands


# ---------------------------------------------------------------- probes
def test_ufw_host_probes(tmp_path: Path) -> None:
    module = FakeModule(ufw_host_commands())
    probes, managers, sources = facts.gather(FakeHost(module, write(tmp_path, UFW_FILES)))
    assert managers == {
        "firewalld": "inactive",
        "ufw": "active",
        "nftables_service": "inactive",
        "nftables_table": "absent",
    }
    assert sources == {
        "nft": "read",
        "iptables_legacy": {"ipv4": False, "ipv6": False},
        "iptables_nft": {"ipv4": True, "ipv6": True},
    }
    assert probes.ufw_rules == sample("ufw_foreign_user_rules.txt")
    assert not module.ran("iptables-legacy-save")  # no legacy tables in /proc/net: nothing to read, nothing loaded
    assert all(env == facts.C_LOCALE for _, env in module.calls)
    state = facts.host_status(probes, [{"port": 7860, "proto": "tcp"}])
    assert state["ports"][0]["scope"] == "none"
    assert state["foreign_blocks"][0]["remove_command"] == "nft delete rule ip filter INPUT handle 124"


def test_legacy_tables_are_read_only_where_the_kernel_has_them(tmp_path: Path) -> None:
    module = FakeModule(ufw_host_commands())
    root = write(tmp_path, {**UFW_FILES, "/proc/net/ip_tables_names": "filter\n", "/proc/net/ip6_tables_names": ""})
    probes, _, sources = facts.gather(FakeHost(module, root))
    assert sources["iptables_legacy"] == {"ipv4": True, "ipv6": False}
    assert probes.iptables_legacy == {"ipv4": sample("iptables_legacy_save.txt")}
    assert module.ran("iptables-legacy-save") and not module.ran("ip6tables-legacy-save")


def test_iptables_nft_save_only_when_nft_shows_xt_rules(tmp_path: Path) -> None:
    commands = {**ufw_host_commands(), ("nft", "-j", "list", "ruleset"): (0, sample("nft_ruleset_os_firewall.json"))}
    module = FakeModule(commands)
    probes, managers, sources = facts.gather(FakeHost(module, tmp_path))
    assert not module.ran("iptables-nft-save") and probes.iptables_nft == {}
    assert managers["nftables_table"] == "present"


def test_firewalld_host_probes(tmp_path: Path) -> None:
    module = FakeModule(firewalld_host_commands())
    probes, managers, _ = facts.gather(FakeHost(module, tmp_path))
    assert managers["firewalld"] == "active" and managers["ufw"] == "absent"
    assert probes.firewalld_active and probes.firewalld_zone == sample("firewalld_list_all_public.txt")
    assert sorted(probes.firewalld_services) == sorted(SERVICES)
    state = facts.host_status(probes, [{"port": 7860, "proto": "tcp"}, {"port": 8080, "proto": "tcp"}])
    assert state["backend"] == "firewalld"
    assert {p["port"]: p["families"]["ipv4"] for p in state["ports"]} == {7860: "none", 8080: "unknown"}


def test_zone_of_the_default_route_interface_wins(tmp_path: Path) -> None:
    commands = firewalld_host_commands()
    commands[("firewall-cmd", "--get-zone-of-interface=eth0")] = (0, "internal\n")
    commands[("firewall-cmd", "--zone=internal", "--list-all")] = (0, "internal\n  target: default\n  services: ssh\n")
    probes, _, _ = facts.gather(FakeHost(FakeModule(commands), tmp_path))
    assert probes.firewalld_zone.startswith("internal")
    assert list(probes.firewalld_services) == ["ssh"]


def test_without_root_only_what_needs_no_root(tmp_path: Path) -> None:
    commands = {
        **ufw_host_commands(),
        ("ufw", "status", "verbose"): (1, "ERROR: You need to be root to run this script\n"),
    }
    module = FakeModule(commands)
    probes, managers, sources = facts.gather(FakeHost(module, tmp_path, as_root=False))
    assert managers["ufw"] == "inactive" and sources["nft"] == "absent"
    assert not module.ran("nft", "-j", "list", "ruleset")
    assert facts.host_status(probes, [{"port": 7860}])["backend"] == "unknown"


def test_missing_or_failing_tools(tmp_path: Path) -> None:
    module = FakeModule({("nft", "-j", "list", "ruleset"): (1, "")})
    probes, managers, sources = facts.gather(FakeHost(module, tmp_path))
    assert managers == {
        "firewalld": "unknown",
        "ufw": "absent",
        "nftables_service": "unknown",
        "nftables_table": "absent",
    }
    assert sources["nft"] == "failed" and probes.nft_json is None
    assert facts.gather(FakeHost(FakeModule({}), tmp_path))[2]["nft"] == "absent"


# ---------------------------------------------------------------- configuration for the role's tasks
def test_ufw_config(tmp_path: Path) -> None:
    host = FakeHost(FakeModule({}), write(tmp_path, UFW_FILES))
    config = facts.ufw_config(host, facts.Probes())
    assert config["ipv6"] is True
    assert config["service"] == "unknown"  # no systemctl on this fake host
    enabled = FakeHost(FakeModule({("systemctl", "is-enabled", "ufw.service"): (0, "enabled\n")}), tmp_path)
    assert facts.ufw_config(enabled, facts.Probes())["service"] == "enabled"
    disabled = FakeHost(FakeModule({("systemctl", "is-enabled", "ufw.service"): (1, "disabled\n")}), tmp_path)
    assert facts.ufw_config(disabled, facts.Probes())["service"] == "disabled"
    assert [(r["dport"], r["family"], r["comment"]) for r in config["rules"]][:2] == [
        ("22", "ipv4", "os_firewall: admin"),
        ("7860", "ipv4", "os_firewall: app"),
    ]


def test_firewalld_config(tmp_path: Path) -> None:
    rich = 'rule family="ipv4" source address="0.0.0.0/0" service name="os-firewall-allowed" accept\n'
    commands = {
        ("firewall-offline-cmd", "--get-default-zone"): (0, "public\n"),
        ("firewall-offline-cmd", "--zone=public", "--get-target"): (0, "default\n"),
        ("firewall-offline-cmd", "--zone=public", "--list-rich-rules"): (0, rich),
        ("firewall-offline-cmd", "--zone=dmz", "--get-target"): (0, "DROP\n"),
        ("firewall-offline-cmd", "--zone=dmz", "--list-rich-rules"): (0, ""),
    }
    host = FakeHost(FakeModule(commands), tmp_path)
    assert facts.firewalld_config(host, "") == {"zone": "public", "target": "default", "rich_rules": [rich.strip()]}
    assert facts.firewalld_config(host, "dmz") == {"zone": "dmz", "target": "DROP", "rich_rules": []}
    assert facts.firewalld_config(host, "nosuchzone") is None
    assert facts.firewalld_config(FakeHost(FakeModule({}), tmp_path), "") is None


def test_ssh_ports_add_the_live_session(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSH_CONNECTION", "198.51.100.9 50000 172.17.0.5 2200")
    assert facts.ssh_ports({"ssh_ports": [22]}) == [22, 2200]
    monkeypatch.delenv("SSH_CONNECTION")
    assert facts.ssh_ports({"ssh_ports": [22]}) == [22]
    assert facts.ssh_ports({"ssh_ports": [22]}, "198.51.100.9 50000 172.17.0.5 2201") == [22, 2201]


def _proc(root: Path, pid: int, ppid: int, comm: str, env: dict[str, str]) -> None:
    (root / str(pid)).mkdir(parents=True)
    (root / str(pid) / "stat").write_text(f"{pid} ({comm}) S {ppid} {pid} {pid} 0 -1\n")
    (root / str(pid) / "environ").write_bytes(b"".join(f"{k}={v}".encode() + b"\0" for k, v in env.items()))


def test_session_ssh_connection_read_from_the_processes_above_become(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """become (sudo) resets the environment; the shell that sshd started, above sudo, still has it."""
    monkeypatch.delenv("SSH_CONNECTION", raising=False)
    monkeypatch.setattr(facts.os, "getppid", lambda: 300)
    _proc(tmp_path, 300, 200, "sudo (as) root", {"PATH": "/usr/bin", "SUDO_USER": "ops"})
    _proc(tmp_path, 200, 100, "sh", {"SSH_CONNECTION": "198.51.100.9 50000 172.17.0.5 2200"})
    _proc(tmp_path, 100, 1, "sshd", {})
    assert facts.session_ssh_connection(str(tmp_path)) == "198.51.100.9 50000 172.17.0.5 2200"
    (tmp_path / "200" / "environ").write_bytes(b"PATH=/bin\0")
    assert facts.session_ssh_connection(str(tmp_path)) == ""  # not over SSH (docker exec, local)
    (tmp_path / "300" / "environ").unlink()
    assert facts.session_ssh_connection(str(tmp_path)) is None  # unreadable: the role asks the login shell
    monkeypatch.setenv("SSH_CONNECTION", "203.0.113.1 1 203.0.113.2 22")
    assert facts.session_ssh_connection(str(tmp_path)) == "203.0.113.1 1 203.0.113.2 22"


# ---------------------------------------------------------------- main()
def run_main(monkeypatch: pytest.MonkeyPatch, module: FakeModule, root: Path) -> dict[str, Any]:
    monkeypatch.setattr(facts, "AnsibleModule", lambda **spec: module)
    monkeypatch.setattr(facts, "Host", lambda mod: FakeHost(mod, root))
    with pytest.raises(Exited) as exited:
        facts.main()
    result: dict[str, Any] = exited.value.args[0]
    return result


def test_main_sets_the_fact_and_changes_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    module = FakeModule(ufw_host_commands(), {"ports": [{"port": 7860, "proto": "tcp", "purpose": "app"}]})
    result = run_main(monkeypatch, module, write(tmp_path, UFW_FILES))
    assert result["changed"] is False and "config" not in result
    fact = result["ansible_facts"]["os_firewall"]
    assert set(fact) == {
        "backend",
        "active",
        "managed",
        "default_incoming",
        "allowed_ports",
        "ports",
        "foreign_blocks",
        "posture",
        "managers",
        "sources",
    }
    assert fact["posture"] == {"firewall_active": True, "default_incoming": "deny", "backend": "ufw"}
    assert fact["foreign_blocks"][0]["port"] == 7860


def test_main_returns_config_beside_the_fact(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    module = FakeModule(ufw_host_commands(), {"config": ["ufw"]})
    result = run_main(monkeypatch, module, write(tmp_path, UFW_FILES))
    assert result["config"]["ufw"]["ipv6"] is True and "config" not in result["ansible_facts"]["os_firewall"]


DPKG_QUERY = ("dpkg-query", "-W", "-f", "${db:Status-Abbrev}|${Package}\n")


def test_main_asks_dpkg_for_every_backends_packages_in_the_same_run(monkeypatch: pytest.MonkeyPatch,
                                                                      tmp_path: Path) -> None:
    commands = ufw_host_commands()
    # dpkg-query prints the packages it knows (rc 1 for the unknown ones); rc (deinstalled) is not installed.
    commands[(*DPKG_QUERY, "ufw", "firewalld", "python3-firewall", "nftables")] = (
        1, "ii |ufw\nrc |firewalld\nii |nftables:amd64\n")
    module = FakeModule(commands, {"packages": ["ufw", "firewalld", "python3-firewall", "nftables"]})
    result = run_main(monkeypatch, module, write(tmp_path, UFW_FILES))
    assert result["packages"] == {"missing": ["firewalld", "python3-firewall"], "tool": "dpkg-query"}
    assert result["changed"] is False and "packages" not in result["ansible_facts"]["os_firewall"]


def test_main_without_packages_asks_no_package_database(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    module = FakeModule(ufw_host_commands())
    result = run_main(monkeypatch, module, write(tmp_path, UFW_FILES))
    assert "packages" not in result and not any(Path(argv[0]).name in ("dpkg-query", "rpm") for argv, _ in module.calls)


def test_main_rejects_package_versions(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    module = FakeModule({}, {"packages": ["ufw=0.36"]})
    monkeypatch.setattr(facts, "AnsibleModule", lambda **spec: module)
    with pytest.raises(Failed) as failed:
        facts.main()
    assert "ufw=0.36" in failed.value.args[0]["msg"]


def test_main_fails_when_firewalld_config_cannot_be_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    module = FakeModule(ufw_host_commands(), {"config": ["firewalld"], "firewalld_zone": "public"})
    monkeypatch.setattr(facts, "AnsibleModule", lambda **spec: module)
    monkeypatch.setattr(facts, "Host", lambda mod: FakeHost(mod, tmp_path))
    with pytest.raises(Failed) as failed:
        facts.main()
    assert "firewalld zone public" in failed.value.args[0]["msg"]


def test_main_rejects_port_numbers_out_of_range(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    module = FakeModule({}, {"ports": [{"port": 70000, "proto": "tcp"}]})
    monkeypatch.setattr(facts, "AnsibleModule", lambda **spec: module)
    with pytest.raises(Failed) as failed:
        facts.main()
    assert "70000" in failed.value.args[0]["msg"]


def test_argument_spec_matches_the_documentation() -> None:
    import yaml

    documented = yaml.safe_load(facts.DOCUMENTATION)["options"]
    captured: dict[str, Any] = {}

    def capture(**spec: Any) -> Any:
        captured.update(spec)
        raise Exited()

    original = facts.AnsibleModule
    try:
        facts.AnsibleModule = capture  # type: ignore[assignment]
        with pytest.raises(Exited):
            facts.main()
    finally:
        facts.AnsibleModule = original  # type: ignore[assignment]
    assert captured["supports_check_mode"] is True
    spec = captured["argument_spec"]
    assert set(spec) == set(documented)
    for name, option in spec.items():
        assert option["type"] == documented[name]["type"]
        assert option.get("default") == documented[name].get("default")
    assert set(spec["ports"]["options"]) == set(documented["ports"]["suboptions"])
