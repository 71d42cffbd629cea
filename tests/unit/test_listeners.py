"""Unit tests for plugins/module_utils/listeners.py (and the thin filters over it in
plugins/filter/listeners.py), on real `ss` output (tests/unit/data/ss/) and cgroup files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.cosyvoice.deploy.plugins.filter import listeners as ls_filters
from ansible_collections.cosyvoice.deploy.plugins.module_utils import listeners as ls

_DATA = Path(__file__).resolve().parent / "data"


def sample(name: str) -> str:
    return (_DATA / "ss" / name).read_text(encoding="utf-8")


def by_port(listeners: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {x["port"]: x for x in listeners}


# port -> (local field minus the container-specific part, address, interface, scope, family, serves)
FORMS = {
    7860: ("0.0.0.0:7860", "0.0.0.0", None, "any", "ipv4", ["ipv4"]),
    7861: ("[::]:7861", "::", None, "any", "ipv6", ["ipv6"]),
    7862: ("*:7862", "*", None, "any", "dual", ["ipv4", "ipv6"]),
    7863: ("127.0.0.1:7863", "127.0.0.1", None, "loopback", "ipv4", ["ipv4"]),
    7864: ("[::1]:7864", "::1", None, "loopback", "ipv6", ["ipv6"]),
    7865: ("[::ffff:127.0.0.1]:7865", "::ffff:127.0.0.1", None, "loopback", "ipv6", ["ipv4"]),
    7866: ("127.0.0.1%lo:7866", "127.0.0.1", "lo", "loopback", "ipv4", ["ipv4"]),
    7867: ("0.0.0.0%eth0:7867", "0.0.0.0", "eth0", "interface", "ipv4", ["ipv4"]),
    7868: ("[::]%lo:7868", "::", "lo", "loopback", "ipv6", ["ipv6"]),
}


@pytest.mark.parametrize("name", ["forms-iproute2-6.1.txt", "forms-iproute2-6.15.txt"])
def test_every_address_form(name: str) -> None:
    listeners = by_port(ls.ss_listeners(sample(name)))
    assert sorted(listeners) == list(range(7860, 7871))
    for port, (local, address, interface, scope, family, serves) in FORMS.items():
        x = listeners[port]
        assert (x["local"], x["address"], x["interface"], x["scope"], x["family"], x["serves"]) == (
            local, address, interface, scope, family, serves), port
        assert x["state"] == "LISTEN" and x["netid"] == "tcp" and x["recv_q"] == 0 and x["send_q"] == 16
    link_local = listeners[7869]
    assert link_local["address"].startswith("fe80::") and link_local["interface"] == "eth0"
    assert link_local["scope"] == "address" and not link_local["loopback"]
    own = listeners[7870]
    assert own["address"].startswith("172.17.") and own["scope"] == "address" and own["serves"] == ["ipv4"]


@pytest.mark.parametrize("name", ["forms-iproute2-6.1.txt", "forms-iproute2-6.15.txt"])
def test_process_field_with_odd_names_and_shared_sockets(name: str) -> None:
    x = by_port(ls.ss_listeners(sample(name)))[7860]
    assert [p["name"] for p in x["processes"]] == ['my srv,"x"', "python3"]
    assert x["processes"][0]["fd"] == 3 and x["processes"][1]["fd"] == 3
    assert x["processes"][0]["pid"] != x["processes"][1]["pid"]


def test_without_root_there_is_no_process_column() -> None:
    listeners = ls.ss_listeners(sample("nonroot-iproute2-6.1.txt"))
    assert len(listeners) == 11
    assert all(x["processes"] == [] for x in listeners)


def test_header_and_netid_column_are_understood() -> None:
    tuln = ls.ss_listeners(sample("tuln-header-iproute2-6.15.txt"))
    assert len(tuln) == 11 and all(x["netid"] == "tcp" for x in tuln)
    tlnp = ls.ss_listeners(sample("tlnp-header-iproute2-6.1.txt"))
    assert len(tlnp) == 11 and by_port(tlnp)[7862]["local"] == "*:7862"


def test_lines_as_a_list_and_empty_output() -> None:
    lines = sample("http-server-squatter-iproute2-6.1.txt").splitlines()
    assert ls.ss_listeners(lines)[0]["processes"] == [{"name": "python3", "pid": 49, "fd": 3}]
    assert ls.ss_listeners("") == [] and ls.ss_listeners(None) == []


def test_old_iproute2_ipv6_wildcard_spelling() -> None:
    # iproute2 < 4.x printed [::]:22 as :::22 (no real sample available any more).
    (x,) = ls.ss_listeners('LISTEN 0 128 :::22 :::* users:(("sshd",pid=1,fd=4))')
    assert (x["address"], x["port"], x["scope"], x["family"]) == ("::", 22, "any", "ipv6")


def test_udp_unconn_lines_count_as_listeners() -> None:
    text = "udp UNCONN 0 0 127.0.0.53%lo:53 0.0.0.0:*\ntcp LISTEN 0 4096 127.0.0.53%lo:53 0.0.0.0:*"
    listeners = ls.ss_listeners(text)
    assert [(x["netid"], x["interface"], x["scope"]) for x in listeners] == [
        ("udp", "lo", "loopback"), ("tcp", "lo", "loopback")]
    assert len(ls.listeners_on_port(listeners, 53)) == 1
    assert len(ls.listeners_on_port(listeners, "53", netid="udp")) == 1


@pytest.mark.parametrize("line", ["LISTEN 0 128", "LISTEN 0 128 nonsense 0.0.0.0:*", "LISTEN 0 128 0.0.0.0:ssh 0.0.0.0:*"])
def test_bad_lines_are_reported(line: str) -> None:
    with pytest.raises(ls.ListenerParseError):
        ls.ss_listeners(line)


@pytest.mark.parametrize(
    ("port", "public", "reach", "loopback_only", "public_ok", "public_exact"),
    [
        (7860, "203.0.113.7", "any", False, True, True),
        (7861, "203.0.113.7", "any", False, False, False),  # v6only [::] does not serve IPv4 clients
        (7861, "2001:db8::7", "any", False, True, True),
        (7862, "203.0.113.7", "any", False, True, True),  # * = dual stack
        (7862, "2001:db8::7", "any", False, True, True),
        (7863, "203.0.113.7", "loopback", True, False, False),
        (7864, "2001:db8::7", "loopback", True, False, False),
        (7865, "203.0.113.7", "loopback", True, False, False),  # ::ffff:127.0.0.1 is loopback too
        (7866, "203.0.113.7", "loopback", True, False, False),
        (7867, "203.0.113.7", "interface", False, True, False),
        (7868, "2001:db8::7", "loopback", True, False, False),  # [::] on device lo
        (7860, "tts.example.com", "any", False, True, True),
        (7860, None, "any", False, True, True),
        (7999, "203.0.113.7", "none", False, False, False),
    ],
)
def test_listener_reach(port: int, public: str | None, reach: str, loopback_only: bool, public_ok: bool,
                        public_exact: bool) -> None:
    r = ls.listener_reach(ls.ss_listeners(sample("forms-iproute2-6.1.txt")), port, public)
    assert (r["reach"], r["loopback_only"], r["public_ok"], r["public_exact"]) == (
        reach, loopback_only, public_ok, public_exact)
    assert r["listening"] == (reach != "none")


def test_listener_on_one_address_behind_nat() -> None:
    listeners = ls.ss_listeners(sample("forms-iproute2-6.1.txt"))
    own = by_port(listeners)[7870]["address"]
    same = ls.listener_reach(listeners, 7870, own)
    nat = ls.listener_reach(listeners, "7870", "198.51.100.9")
    assert same["public_ok"] and same["public_exact"]
    assert nat["public_ok"] and not nat["public_exact"]  # served (NAT) but flagged
    assert [p["name"] for p in same["processes"]] == ['my srv,"x"', "python3"]


def test_listener_pids() -> None:
    listeners = ls.ss_listeners(sample("forms-iproute2-6.1.txt"))
    pids = ls.listener_pids(listeners)
    assert len(pids) == 2 and pids == sorted(pids)
    assert ls.listener_pids(listeners, [7999]) == []
    assert ls.listener_pids(listeners, 7860) == pids


def test_proc_cgroup_units_hybrid_hierarchy() -> None:
    units = ls.proc_cgroup_units((_DATA / "cgroup" / "hybrid-bookworm-docker.txt").read_text(encoding="utf-8"))
    assert units["49"] == "squatter.service"
    assert units["1"] == "init.scope"
    shell = [pid for pid in units if pid not in ("1", "49")]
    assert len(shell) == 1 and units[shell[0]] == ""  # docker exec: in no unit


def test_proc_cgroup_units_pure_v2_and_sessions() -> None:
    text = (
        "/proc/812/cgroup:0::/system.slice/cosyvoice.service\n"
        "/proc/900/cgroup:0::/system.slice/nginx.service\n"
        "/proc/1200/cgroup:0::/user.slice/user-1000.slice/session-3.scope\n"
        "/proc/1300/cgroup:0::/system.slice/cosyvoice.service/worker\n"  # a sub-cgroup of the unit
        "garbage"
    )
    assert ls.proc_cgroup_units(text) == {
        "812": "cosyvoice.service", "900": "nginx.service", "1200": "session-3.scope", "1300": "cosyvoice.service"}
    assert ls.proc_cgroup_units(text.splitlines()) == ls.proc_cgroup_units(text)


def test_proc_cgroup_file_itself() -> None:
    """/proc/<pid>/cgroup as the host_probe module reads it (no grep prefix)."""
    text = (_DATA / "cgroup" / "proc-pid-cgroup-hybrid.txt").read_text(encoding="utf-8")
    assert ls.cgroup_unit(text) == "demo.service"
    assert ls.cgroup_unit("0::/system.slice/cosyvoice.service/worker\n") == "cosyvoice.service"
    assert ls.cgroup_unit("0::/user.slice/user-0.slice/session-3.scope") == "session-3.scope"
    assert ls.cgroup_unit("0::/docker/abc\n") == ""  # in no unit
    assert ls.cgroup_unit("7:blkio:/docker/abc\n") is None  # only controller lines: says nothing
    assert ls.cgroup_unit("") is None


def test_tolerant_parsing_keeps_the_good_lines() -> None:
    text = sample("probe-demo-iproute2-6.1.txt") + "LISTEN 0 128 0.0.0.0:ssh 0.0.0.0:*\n"
    listeners, errors = ls.ss_listeners_tolerant(text)
    assert [x["port"] for x in listeners] == [7860] and len(errors) == 1 and "non-numeric port" in errors[0]


def test_port_holders() -> None:
    listeners = ls.ss_listeners(sample("probe-demo-iproute2-6.1.txt"))
    pid = listeners[0]["processes"][0]["pid"]
    assert ls.port_holders(listeners, [7860, 7861], {str(pid): "demo.service"}) == [
        {"port": 7860, "listening": True, "addresses": ["0.0.0.0:7860"],
         "holders": [{"name": "python3", "pid": pid, "unit": "demo.service"}]},
        {"port": 7861, "listening": False, "addresses": [], "holders": []}]


def test_filters_are_registered_and_fail_cleanly() -> None:
    filters = ls_filters.FilterModule().filters()
    assert set(filters) == {"ss_listeners", "listeners_on_port", "listener_reach", "listener_pids", "proc_cgroup_units"}
    assert filters["ss_listeners"](sample("probe-demo-iproute2-6.1.txt")) == ls.ss_listeners(
        sample("probe-demo-iproute2-6.1.txt"))
    with pytest.raises(AnsibleFilterError, match="non-numeric port"):
        filters["ss_listeners"]("LISTEN 0 128 0.0.0.0:ssh 0.0.0.0:*")
