"""plugins/module_utils/packages.py: one dpkg-query or rpm query for a list of names (package_state and
os_firewall_facts ask through it)."""

from __future__ import annotations

from typing import Any, Optional

from ansible_collections.cosyvoice.deploy.plugins.module_utils import packages


class FakeModule:
    def __init__(self, tools: dict[str, tuple[int, str]]) -> None:
        self.tools = tools
        self.calls: list[list[str]] = []

    def get_bin_path(self, name: str) -> Optional[str]:
        return f"/usr/bin/{name}" if name in self.tools else None

    def run_command(self, argv: list[str], **kwargs: Any) -> tuple[int, str, str]:
        assert isinstance(argv, list) and not kwargs.get("use_unsafe_shell")
        self.calls.append(argv)
        rc, out = self.tools[argv[0]]
        return rc, out, ""


def test_dpkg_first_in_one_query_in_the_order_given() -> None:
    module = FakeModule({"dpkg-query": (1, "ii |nftables\nrc |firewalld\n"), "rpm": (0, "")})
    assert packages.missing_packages(module, ["ufw", "firewalld", "nftables"]) == (["ufw", "firewalld"], "dpkg-query")
    assert module.calls == [["dpkg-query", "-W", "-f", "${db:Status-Abbrev}|${Package}\n", "ufw", "firewalld", "nftables"]]


def test_rpm_where_there_is_no_dpkg() -> None:
    module = FakeModule({"rpm": (1, "firewalld\npackage python3-firewall is not installed\n")})
    assert packages.missing_packages(module, ["firewalld", "python3-firewall"]) == (["python3-firewall"], "rpm")
    assert module.calls == [["rpm", "-q", "--qf", "%{NAME}\n", "firewalld", "python3-firewall"]]


def test_without_a_package_database_every_name_is_missing_and_nothing_runs() -> None:
    module = FakeModule({})
    assert packages.missing_packages(module, ["ufw"]) == (["ufw"], "none")
    assert packages.missing_packages(FakeModule({"dpkg-query": (0, "")}), []) == ([], "none")
    assert module.calls == []


def test_names_with_versions_or_patterns_are_refused() -> None:
    assert packages.bad_names(["ufw", "nginx=1.22", "py*", "", "a b", "python3-passlib"]) == ["nginx=1.22", "py*", "", "a b"]
