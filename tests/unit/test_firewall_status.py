"""Unit tests for plugins/module_utils/firewall_status.py: the backend in charge, the kernel's whole filter,
foreign blocking rules, posture. Real command output from tests/unit/data/os_firewall/ (README there)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ansible_collections.cosyvoice.deploy.plugins.module_utils.firewall_status import Probes, host_status

DATA = Path(__file__).resolve().parent / "data" / "os_firewall"
SERVICES = ("dhcpv6-client", "os-firewall-admin", "ssh", "os-firewall-allowed", "http")


def sample(name: str) -> str:
    return (DATA / name).read_text()


def tcp(*numbers: int) -> list[dict[str, Any]]:
    return [{"port": n, "proto": "tcp"} for n in numbers]


def by_port(state: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {p["port"]: p for p in state["ports"]}


def ufw_host(compat: bool = True, **extra: Any) -> Probes:
    """ufw active with the role's rules, plus `iptables -I INPUT -p tcp --dport 7860 -j DROP` (iptables-nft)."""
    saves = {"ipv4": sample("iptables_nft_save_ufw_foreign.txt"), "ipv6": sample("ip6tables_nft_save_ufw_foreign.txt")}
    return Probes(
        ufw_status=sample("ufw_foreign_status_verbose.txt"),
        ufw_rules=sample("ufw_foreign_user_rules.txt"),
        nft_json=sample("nft_ruleset_ufw_foreign.json"),
        iptables_nft=saves if compat else {},
        **extra,
    )


def firewalld_host(**extra: Any) -> Probes:
    return Probes(
        firewalld_active=True,
        firewalld_zone=sample("firewalld_list_all_public.txt"),
        firewalld_services={name: sample(f"firewalld_info_service_{name}.txt") for name in SERVICES},
        **extra,
    )


# ---------------------------------------------------------------- which backend
def test_firewalld_wins_when_running() -> None:
    state = host_status(firewalld_host(ufw_status=sample("ufw_status_verbose.txt")), tcp(8080, 9999))
    assert state["backend"] == "firewalld" and state["default_incoming"] == "reject"
    assert state["allowed_ports"] == [{"port": 8080, "proto": "tcp"}]
    assert state["posture"] == {"firewall_active": True, "default_incoming": "reject", "backend": "firewalld"}


def test_active_ufw_is_read_through_its_user_rules() -> None:
    probes = Probes(
        ufw_status=sample("ufw_status_verbose.txt"),
        ufw_rules=sample("ufw_user_rules.txt"),
        nft_json=sample("nft_ruleset_iptables_nft_ufw.json"),
    )
    state = host_status(probes, tcp(22, 1234))
    assert state["backend"] == "ufw" and state["managed"] is True
    assert state["allowed_ports"] == [{"port": 22, "proto": "tcp"}]
    assert state["foreign_blocks"] == []  # ufw's own chains (xt matches and all) are ufw's business


def test_the_roles_nftables_table() -> None:
    state = host_status(Probes(nft_json=sample("nft_ruleset_os_firewall.json")), tcp(7860, 9999))
    assert (state["backend"], state["managed"], state["default_incoming"]) == ("nftables", True, "drop")
    assert state["allowed_ports"] == [{"port": 7860, "proto": "tcp"}]


def test_nothing_filters() -> None:
    state = host_status(Probes(nft_json='{"nftables": [{"metainfo": {"version": "1.0.6"}}]}'), tcp(7860))
    assert (state["backend"], state["active"]) == ("none", False)
    assert by_port(state)[7860]["reason"] == "no nftables chain on the input hook"
    assert state["posture"] == {"firewall_active": False, "default_incoming": "allow", "backend": "none"}
    bare = host_status(Probes(), tcp(7860))
    assert by_port(bare)[7860]["reason"] == "no ufw, firewalld or nftables ruleset found"
    inactive = host_status(Probes(ufw_status="Status: inactive\n", nft_json='{"nftables": []}'), tcp(7860))
    assert by_port(inactive)[7860]["reason"] == "ufw is installed but inactive"


def test_without_root_nothing_is_claimed() -> None:
    state = host_status(Probes(root=False, nft_json=sample("nft_ruleset_os_firewall.json")), tcp(7860))
    assert state["backend"] == "unknown" and state["ports"][0]["allowed"] is None
    assert "become" in state["ports"][0]["reason"]
    assert state["posture"] == {"firewall_active": None, "default_incoming": "unknown", "backend": "unknown"}


def test_unreadable_nft_output_is_unknown() -> None:
    state = host_status(Probes(nft_json="Error: syntax error"), tcp(80))
    assert state["backend"] == "unknown" and state["ports"][0]["allowed"] is None
    assert state["ports"][0]["reason"] == "unreadable nft output"


# ---------------------------------------------------------------- foreign rules
def test_ufw_allows_but_a_foreign_iptables_rule_drops_first() -> None:
    """The case of the issue: `iptables -I INPUT -p tcp --dport 7860 -j DROP` next to ufw."""
    state = host_status(ufw_host(), tcp(22, 7860, 8000))
    port = by_port(state)[7860]
    assert (port["allowed"], port["scope"], port["families"]) == (False, "none", {"ipv4": "none", "ipv6": "any"})
    assert port["reason"] == (
        "ufw (default incoming: deny); dropped by a rule that ufw did not write: "
        "nft ip filter INPUT handle 124: tcp dport 7860 drop"
    )
    assert state["foreign_blocks"] == [
        {
            "port": 7860,
            "proto": "tcp",
            "family": "ipv4",
            "source": "nft",
            "table_family": "ip",
            "table": "filter",
            "chain": "INPUT",
            "handle": 124,
            "position": 1,
            "rule": "tcp dport 7860 drop",
            "verdict": "drop",
            "match": "all",
            "remove_command": "nft delete rule ip filter INPUT handle 124",
            "kept_because": None,
        }
    ]
    # The REJECT appended after ufw's jumps never sees a packet: ufw decides first.
    assert by_port(state)[8000]["reason"] == "ufw (default incoming: deny)"
    assert state["allowed_ports"] == [{"port": 22, "proto": "tcp"}]


def test_without_iptables_nft_save_the_native_rule_is_still_read() -> None:
    state = host_status(ufw_host(compat=False), tcp(7860))
    assert state["foreign_blocks"][0]["rule"] == "tcp dport 7860 drop"
    assert by_port(state)[7860]["scope"] == "none"


def test_without_the_nft_tool_iptables_nft_save_is_the_ruleset() -> None:
    """Debian's ufw hosts have iptables-nft but often no `nft`: the same rule, read as iptables text."""
    probes = ufw_host()
    probes.nft_json = None
    state = host_status(probes, tcp(22, 7860))
    port = by_port(state)[7860]
    assert (port["allowed"], port["families"]["ipv4"]) == (False, "none")
    [block] = state["foreign_blocks"]
    assert (block["source"], block["chain"], block["verdict"]) == ("iptables-nft", "INPUT", "drop")
    assert block["remove_command"] == "iptables-nft -D INPUT -p tcp -m tcp --dport 7860 -j DROP"
    assert by_port(state)[22]["allowed"] is True


def test_foreign_rules_next_to_the_roles_table() -> None:
    probes = Probes(
        nft_json=sample("nft_ruleset_os_firewall_foreign.json"),
        iptables_nft={"ipv4": sample("iptables_nft_save_os_firewall_foreign.txt")},
    )
    state = host_status(probes, tcp(22, 7860, 7861))
    ports = by_port(state)
    assert ports[7860]["families"] == {"ipv4": "none", "ipv6": "some"} and ports[7860]["scope"] == "none"
    assert ports[7861]["reason"] == "nftables input hook"  # closed by the role; the blocklist rule is not the cause
    assert ports[22]["families"] == {"ipv4": "some", "ipv6": "any"}
    blocks = {(b["port"], b["family"], b["handle"]): b for b in state["foreign_blocks"]}
    assert set(blocks) == {(7860, "ipv4", 2), (7860, "ipv6", 2), (7861, "ipv4", 3)}
    assert blocks[(7860, "ipv6", 2)]["remove_command"] == "nft delete rule inet blocker input handle 2"
    assert blocks[(7860, "ipv6", 2)]["match"] == "some" and blocks[(7860, "ipv6", 2)]["verdict"] == "reject"
    # `iptables -A INPUT -s 198.51.100.0/24 -j DROP` also drops SSH from there: never proposed for removal.
    assert blocks[(7861, "ipv4", 3)]["remove_command"] is None
    assert blocks[(7861, "ipv4", 3)]["kept_because"] == "the rule also matches SSH (port 22/tcp)"


def test_ssh_port_is_never_proposed_for_removal() -> None:
    probes = Probes(
        nft_json=sample("nft_ruleset_iptables_nft_foreign.json"),
        iptables_nft={
            "ipv4": sample("iptables_nft_save_foreign.txt"),
            "ipv6": sample("ip6tables_nft_save_foreign.txt"),
        },
    )
    state = host_status(probes, tcp(22, 7860, 80, 8080))
    assert by_port(state)[22]["families"]["ipv4"] == "some"  # the -m recent brute-force rule
    assert all(block["port"] != 22 for block in state["foreign_blocks"])
    moved = host_status(probes, tcp(7860), ssh_ports=[7860])
    assert moved["foreign_blocks"] == []
    assert by_port(state)[80]["scope"] == "none"  # multiport 80,443 DROP over IPv4, classified from iptables-nft-save
    assert {(b["port"], b["family"]) for b in state["foreign_blocks"]} == {
        (7860, "ipv4"),
        (7860, "ipv6"),
        (80, "ipv4"),
        (8080, "ipv4"),
    }


def test_firewalld_and_a_foreign_rule() -> None:
    probes = firewalld_host(nft_json=sample("nft_ruleset_iptables_nft_foreign.json"))
    state = host_status(probes, tcp(7860, 8080))
    assert state["backend"] == "firewalld"
    assert by_port(state)[7860]["scope"] == "none"
    assert "dropped by a rule that firewalld did not write" in by_port(state)[7860]["reason"]
    # Without iptables-nft-save the multiport xt match after the REJECT cannot be read: unknown, and said so.
    assert by_port(state)[8080]["families"] == {"ipv4": "unknown", "ipv6": "any"}
    assert by_port(state)[8080]["reason"].endswith(
        'cannot evaluate nft ip filter INPUT handle 4: meta l4proto tcp xt match "multiport" drop'
    )
    probes.iptables_nft = {"ipv4": sample("iptables_nft_save_foreign.txt")}
    state = host_status(probes, tcp(8080))
    assert by_port(state)[8080]["families"] == {"ipv4": "some", "ipv6": "any"}  # REJECT from 10.0.0.0/8 only


def test_real_firewalld_host_with_a_foreign_rule() -> None:
    """firewalld 1.3.3 with the role's services, then `iptables -I INPUT -p tcp --dport 7860 -j DROP`."""
    names = ("dhcpv6-client", "ssh", "os-firewall-admin", "os-firewall-allowed")
    probes = Probes(
        firewalld_active=True,
        firewalld_zone=sample("firewalld_foreign_list_all_public.txt"),
        firewalld_services={name: sample(f"firewalld_foreign_info_service_{name}.txt") for name in names},
        nft_json=sample("nft_ruleset_firewalld_foreign.json"),
    )
    state = host_status(probes, tcp(22, 7860, 9999))
    assert (state["backend"], state["managed"], state["default_incoming"]) == ("firewalld", True, "reject")
    ports = by_port(state)
    assert ports[22]["scope"] == "any" and ports[9999]["scope"] == "none"
    assert ports[7860]["families"] == {"ipv4": "none", "ipv6": "any"} and ports[7860]["scope"] == "none"
    assert [(b["port"], b["family"], b["remove_command"]) for b in state["foreign_blocks"]] == [
        (7860, "ipv4", "nft delete rule ip filter INPUT handle 2")
    ]
    # firewalld's own table is firewalld's business: none of its rules is foreign, and all of them stand for the zone.
    del probes.firewalld_services["os-firewall-allowed"]
    assert by_port(host_status(probes, tcp(7860)))[7860]["families"]["ipv6"] == "unknown"


def test_legacy_iptables_alone_is_the_backend_iptables() -> None:
    probes = Probes(
        nft_json='{"nftables": []}',
        iptables_legacy={"ipv4": sample("iptables_legacy_save.txt"), "ipv6": sample("ip6tables_legacy_save.txt")},
    )
    state = host_status(probes, tcp(7860, 80, 8080))
    assert (state["backend"], state["default_incoming"]) == ("iptables", "drop")
    assert state["posture"]["firewall_active"] is True
    blocks = {(b["port"], b["family"]): b for b in state["foreign_blocks"]}
    assert blocks[(7860, "ipv4")]["remove_command"] == (
        "iptables-legacy -D INPUT -p tcp -m tcp --dport 7860 -j REJECT --reject-with icmp-port-unreachable"
    )
    assert blocks[(7860, "ipv4")]["source"] == "iptables-legacy" and blocks[(7860, "ipv4")]["handle"] is None
    assert blocks[(8080, "ipv4")]["remove_command"] is None  # -A INPUT -p tcp -j DROP also drops SSH
    assert blocks[(8080, "ipv6")]["remove_command"].startswith("ip6tables-legacy -D INPUT -s 2001:db8::/32")


def test_legacy_rules_next_to_ufw() -> None:
    state = host_status(ufw_host(iptables_legacy={"ipv4": sample("iptables_legacy_save.txt")}), tcp(22, 7860))
    # ufw allows SSH; legacy `-A INPUT -p tcp -j DROP` drops all tcp over IPv4: not reachable, said so,
    # but never proposed for removal.
    assert by_port(state)[22]["families"] == {"ipv4": "none", "ipv6": "any"} and by_port(state)[22]["scope"] == "none"
    assert "iptables-legacy ip filter INPUT rule 3" in by_port(state)[22]["reason"]
    assert by_port(state)[7860]["families"] == {"ipv4": "none", "ipv6": "any"}
    sources = {b["source"] for b in state["foreign_blocks"]}
    assert sources == {"nft", "iptables-legacy"}


@pytest.mark.parametrize("ports", [[], None])
def test_no_ports(ports: Any) -> None:
    state = host_status(ufw_host(), ports)
    assert state["ports"] == [] and state["foreign_blocks"] == [] and state["backend"] == "ufw"
