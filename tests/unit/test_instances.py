"""cosyvoice_instances (issue 16): resolution and refusals in the endpoint filter, the units
each instance gets, nginx's upstream list from the wiring, and the diagnosis of each instance."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from ansible_collections.cosyvoice.deploy.plugins.filter import diagnosis as dg
from ansible_collections.cosyvoice.deploy.plugins.filter.cosyvoice_endpoint import (
    EndpointError,
    cosyvoice_endpoint,
    instance_units,
    resolve_instances,
)
from ansible_collections.cosyvoice.deploy.plugins.filter.site_wiring import site_wiring

from test_diagnosis import ACTIVE, app_line, healthy_proxy, ss


def proxy(**kw: Any) -> dict[str, Any]:
    return cosyvoice_endpoint("proxy", server_port=7860, public_address="tts.example.com", **kw)


def test_one_instance_keeps_the_plain_name_and_port() -> None:
    ep = cosyvoice_endpoint("direct", server_port=7861, public_address="h", cuda_visible_devices="1")
    assert ep["instances"] == [{"index": 0, "name": "cosyvoice", "port": 7861, "gpu": "1",
                                "backend_url": "http://127.0.0.1:7861/"}]


def test_auto_is_one_per_gpu_behind_the_proxy_only() -> None:
    assert [x["gpu"] for x in proxy(instances="auto", gpu_count=4)["instances"]] == ["0", "1", "2", "3"]
    assert [x["port"] for x in proxy(instances="auto", gpu_count=4)["instances"]] == [7860, 7861, 7862, 7863]
    assert len(proxy(instances="auto", gpu_count=0)["instances"]) == 1
    assert len(proxy(instances="auto", gpu_count=None)["instances"]) == 1
    assert len(proxy(instances="auto", gpu_count=4, needs_gpu=False)["instances"]) == 1
    direct = cosyvoice_endpoint("direct", public_address="h", instances="auto", gpu_count=4)
    assert [x["name"] for x in direct["instances"]] == ["cosyvoice"]
    # Without systemd (supervisord): one instance, whatever the GPUs.
    assert len(proxy(instances="auto", gpu_count=4, process_manager="supervisord")["instances"]) == 1


def test_a_number_names_units_and_pins_gpus() -> None:
    members = proxy(instances=3, gpu_count=4, service_name="tts")["instances"]
    assert [(x["name"], x["port"], x["gpu"]) for x in members] == [
        ("tts-0", 7860, "0"), ("tts-1", 7861, "1"), ("tts-2", 7862, "2")]
    assert members[2]["backend_url"] == "http://127.0.0.1:7862/"
    # The espeak engine needs no GPU: nothing pinned.
    assert {x["gpu"] for x in proxy(instances=3, needs_gpu=False)["instances"]} == {""}


def test_a_gpu_list_shares_gpus_deliberately() -> None:
    members = proxy(instances=[0, 0, 1], gpu_count=2)["instances"]
    assert [(x["port"], x["gpu"]) for x in members] == [(7860, "0"), (7861, "0"), (7862, "1")]


def test_dicts_set_ports() -> None:
    members = proxy(instances=[{"gpu": 0}, {"gpu": 1, "port": 7900}], gpu_count=2)["instances"]
    assert [(x["port"], x["gpu"]) for x in members] == [(7860, "0"), (7900, "1")]
    cpu = proxy(instances=[{"port": 7860}, {"port": 7861}], gpu_count=0)["instances"]
    assert [x["gpu"] for x in cpu] == ["", ""]


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"instances": 0}, ["cosyvoice_instances is 0", "at least 1"]),
    ({"instances": "0"}, ["cosyvoice_instances is 0"]),
    ({"instances": []}, ["cosyvoice_instances is 0"]),
    ({"instances": 3, "gpu_count": 2}, ["cosyvoice_instances is 3", "2 NVIDIA GPU", "[0, 1, 0]"]),
    ({"instances": 2, "gpu_count": 0}, ["0 NVIDIA GPU", "CPU instances"]),
    ({"instances": [0, 2], "gpu_count": 2}, ["GPU(s) 2", "indexes 0-1"]),
    ({"instances": [{"port": 7860}, {"port": 7861}, {"port": 7861}], "needs_gpu": False},
     ["port 7861", "instances 1 and 2"]),
    ({"instances": [{"port": 7860}, {"port": 443}], "needs_gpu": False}, ["port 443", "nginx"]),
    ({"instances": [{"port": 7870}, {}], "needs_gpu": False}, ["cosyvoice_server_port (7860)", "7870"]),
    ({"instances": [{"gpu": 0, "ports": 1}]}, ["unknown key(s) ports"]),
    ({"instances": [{"gpu": "x"}]}, ["gpu must be a GPU index"]),
    ({"instances": "many"}, ["cosyvoice_instances must be auto"]),
    ({"instances": True}, ["cosyvoice_instances must be auto"]),
    ({"instances": 2, "needs_gpu": False, "cuda_visible_devices": "1"}, ["cosyvoice_cuda_visible_devices"]),
    ({"instances": 2, "needs_gpu": False, "process_manager": "supervisord"}, ["supervisord", "need systemd"]),
])
def test_bad_input_names_the_variable(kwargs: dict[str, Any], words: list[str]) -> None:
    with pytest.raises(EndpointError) as err:
        proxy(**kwargs)
    for word in words:
        assert word in str(err.value)


@pytest.mark.parametrize("exposure", ["direct", "local"])
def test_several_instances_need_the_proxy(exposure: str) -> None:
    with pytest.raises(EndpointError, match="users would need 2 ports.*cosyvoice_exposure: proxy"):
        cosyvoice_endpoint(exposure, public_address="h", instances=2, needs_gpu=False)


def test_several_instances_refused_on_a_container_platform() -> None:
    with pytest.raises(EndpointError, match="autodl publishes one port"):
        resolve_instances(2, "proxy", 6006, needs_gpu=False, single_only="cosyvoice_platform=autodl publishes one port")


def test_ports_past_65535_are_refused() -> None:
    with pytest.raises(EndpointError, match="port 65536"):
        cosyvoice_endpoint("proxy", server_port=65534, public_address="h", instances=3, needs_gpu=False)


def test_units_per_instance_and_one_planned_restart() -> None:
    members = proxy(instances=2, needs_gpu=False)["instances"]
    units = instance_units(members, "cosyvoice", watchdog=True, scheduled_restart=False)
    assert [(u["dest"], u["enabled"]) for u in units] == [
        ("cosyvoice-0-watchdog.service", True), ("cosyvoice-0-watchdog.timer", True),
        ("cosyvoice-1-watchdog.service", True), ("cosyvoice-1-watchdog.timer", True),
        ("cosyvoice-scheduled-restart.service", False), ("cosyvoice-scheduled-restart.timer", False)]
    assert units[2]["instance"]["port"] == 7861
    one = instance_units(proxy()["instances"], "cosyvoice")
    assert [u["dest"] for u in one][:2] == ["cosyvoice-watchdog.service", "cosyvoice-watchdog.timer"]


def _wire(ep: dict[str, Any]) -> dict[str, Any]:
    return site_wiring(ep, {}, inventory_hostname="gpu1", service_name="cosyvoice")["values"]


def test_wiring_gives_nginx_every_instance_and_verify_the_first() -> None:
    values = _wire(proxy(instances=3, needs_gpu=False))
    assert values["nginx_proxy_upstream_servers"] == ["127.0.0.1:7860", "127.0.0.1:7861", "127.0.0.1:7862"]
    assert values["nginx_proxy_upstream_port"] == 7860
    assert values["verify_service_name"] == "cosyvoice-0"
    one = _wire(proxy())
    assert one["nginx_proxy_upstream_servers"] == [] and one["verify_service_name"] == "cosyvoice"


def test_wiring_refuses_upstream_servers_from_the_inventory() -> None:
    result = site_wiring(proxy(instances=2, needs_gpu=False), {"nginx_proxy_upstream_servers": ["10.0.0.1:1"]},
                         service_name="cosyvoice")
    assert any("cosyvoice_instances" in p for p in result["problems"])


# -- the diagnosis of each instance --------------------------------------------------------------------------

def three_instances() -> dict[str, Any]:
    """A converged proxy host with 3 instances (7860-7862): the first is the app unit."""
    ev = healthy_proxy()
    ev["endpoint"]["instances"] = [{"index": i, "name": f"cosyvoice-{i}", "port": 7860 + i, "gpu": str(i)}
                                   for i in range(3)]
    ev["service"]["unit"] = ev["expected"]["app_unit"] = "cosyvoice-0.service"
    ev["instances"] = dg.cosyvoice_instance_evidence(
        ev["endpoint"]["instances"][1:],
        {"cosyvoice-1.service": {"properties": dict(ACTIVE, MainPID="813")},
         "cosyvoice-2.service": {"properties": dict(ACTIVE, MainPID="814")}})
    ev["listeners"] += ss(app_line("127.0.0.1:7861", 813), app_line("127.0.0.1:7862", 814))
    ev["pid_units"].update({"812": "cosyvoice-0.service", "813": "cosyvoice-1.service",
                            "814": "cosyvoice-2.service"})
    return ev


def test_three_healthy_instances_pass() -> None:
    result = dg.cosyvoice_diagnose(copy.deepcopy(three_instances()))
    assert result["ok"], [c for c in result["checks"] if c["status"] != "ok"]
    ids = {c["id"]: c for c in result["checks"]}
    assert ids["instance.active.2"]["summary"].startswith("cosyvoice-2.service active (running): instance 2 of 3")
    assert "GPU 2" in ids["instance.active.2"]["summary"]
    assert ids["instance.bind.1"]["status"] == "ok"
    assert ids["port_conflict.7862"]["status"] == "ok"


def test_a_stopped_instance_is_named_with_its_fix() -> None:
    ev = three_instances()
    ev["instances"][1]["properties"] = dict(ACTIVE, ActiveState="inactive", SubState="dead", MainPID="0")
    ev["listeners"] = [x for x in ev["listeners"] if x["port"] != 7862]
    result = dg.cosyvoice_diagnose(ev)
    assert not result["ok"] and result["layer"] == "service"
    assert result["check"] == "instance.active.2"
    assert "cosyvoice-2.service" in result["cause"] and "2 of 3 instances serve" in result["cause"]
    assert "systemctl restart cosyvoice-2.service" in result["fix"]
    assert {c["id"]: c["status"] for c in result["checks"]}["instance.bind.2"] == "skip"


def test_a_missing_instance_unit() -> None:
    ev = three_instances()
    ev["instances"][0]["properties"] = {"LoadState": "not-found", "ActiveState": "inactive"}
    ev["listeners"] = [x for x in ev["listeners"] if x["port"] != 7861]
    result = dg.cosyvoice_diagnose(ev)
    assert result["check"] == "instance.active.1" and "does not exist" in result["cause"]


def test_an_instance_exposed_beyond_loopback() -> None:
    ev = three_instances()
    ev["listeners"] = [x for x in ev["listeners"] if x["port"] != 7861] + ss(app_line("0.0.0.0:7861", 813))
    result = dg.cosyvoice_diagnose(ev)
    assert result["layer"] == "bind" and result["check"] == "instance.bind.1"
    assert "0.0.0.0:7861" in result["cause"]


def test_an_instance_port_held_by_another_process() -> None:
    ev = three_instances()
    ev["listeners"] = [x for x in ev["listeners"] if x["port"] != 7862] + ss(
        'LISTEN 0 5 127.0.0.1:7862 0.0.0.0:* users:(("nc",pid=999,fd=3))')
    ev["instances"][1]["properties"] = dict(ACTIVE, ActiveState="activating", SubState="auto-restart",
                                            Result="exit-code")
    result = dg.cosyvoice_diagnose(ev)
    assert result["layer"] == "port_conflict" and "nc (pid 999" in result["cause"]


# -- a fleet: backends behind a front proxy host -------------------------------------------------------------

from ansible_collections.cosyvoice.deploy.plugins.filter.site_wiring import (  # noqa: E402
    cosyvoice_fleet,
    cosyvoice_rollout_fronts,
    cosyvoice_rollout_targets,
)


def backend_ep(**kw: Any) -> dict[str, Any]:
    kw.setdefault("front_hosts", ["front"])
    return cosyvoice_endpoint("backend", server_port=7870, public_address="203.0.113.9", private_address="10.0.0.2",
                              needs_gpu=False, **kw)


def front_ep(**kw: Any) -> dict[str, Any]:
    return cosyvoice_endpoint("proxy", server_port=7860, public_address="tts.example.com", private_address="10.0.0.1",
                              upstream_hosts=["gpu-b"], needs_gpu=False, auth=True, **kw)


def test_a_backend_listens_for_its_front_without_login() -> None:
    ep = backend_ep(instances=2, auth=True)
    assert ep["bind_address"] == "0.0.0.0" and ep["auth"] is False
    assert ep["public_address"] == "10.0.0.2" and ep["url"] == "http://10.0.0.2:7870/"
    assert ep["public_ports"] == [{"port": 7870, "proto": "tcp", "purpose": "backend"},
                                  {"port": 7871, "proto": "tcp", "purpose": "backend"}]


@pytest.mark.parametrize(("exposure", "kwargs", "words"), [
    ("backend", {"front_hosts": []}, ["needs cosyvoice_front_hosts"]),
    ("backend", {"front_hosts": ["f"], "bind_address": "127.0.0.1"}, ["front proxy host could not connect"]),
    ("direct", {"front_hosts": ["f"]}, ["cosyvoice_front_hosts is set with cosyvoice_exposure=direct"]),
    ("backend", {"front_hosts": ["f"], "upstream_hosts": ["b"]}, ["only a front proxy"]),
    ("backend", {"front_hosts": ["f"], "platform": "autodl"}, ["autodl"]),
    ("proxy", {"private_address": "not a host!"}, ["cosyvoice_private_address"]),
])
def test_fleet_bad_input(exposure: str, kwargs: dict[str, Any], words: list[str]) -> None:
    with pytest.raises(EndpointError) as err:
        cosyvoice_endpoint(exposure, server_port=6006 if kwargs.get("platform") else 7870, public_address="h",
                           needs_gpu=False, **kwargs)
    for word in words:
        assert word in str(err.value)


def fleet_wiring(ep: dict[str, Any], fleet: dict[str, Any], me: str) -> dict[str, Any]:
    return site_wiring(ep, {}, inventory_hostname=me, service_name="cosyvoice", fleet=fleet)


def test_the_front_balances_its_instances_and_the_backends() -> None:
    back = backend_ep(instances=2)
    out = fleet_wiring(front_ep(instances=2), {"gpu-b": back}, "front")
    assert out["problems"] == []
    v = out["values"]
    assert v["nginx_proxy_upstream_servers"] == ["127.0.0.1:7860", "127.0.0.1:7861", "10.0.0.2:7870", "10.0.0.2:7871"]
    assert v["verify_upstreams"] == [{"host": "gpu-b", "address": "10.0.0.2", "port": 7870, "name": "cosyvoice-0"},
                                     {"host": "gpu-b", "address": "10.0.0.2", "port": 7871, "name": "cosyvoice-1"}]
    assert v["verify_remote_from"] == "localhost"
    assert "os_firewall_allowed_cidrs" not in v  # the role's default: everyone may reach 80/443


def test_a_backend_admits_its_front_only_and_is_checked_from_it() -> None:
    out = fleet_wiring(backend_ep(), {"front": front_ep()}, "gpu-b")
    assert out["problems"] == []
    v = out["values"]
    assert v["os_firewall_allowed_cidrs"] == ["10.0.0.1/32"] == v["cloud_security_group_cidrs"]
    assert v["cloud_security_group_cidrs_ipv6"] == []
    assert v["os_firewall_allowed_ports"] == [{"port": 7870, "proto": "tcp", "purpose": "backend"}]
    assert v["nginx_proxy_enabled"] is False and v["verify_remote_from"] == "front"


@pytest.mark.parametrize(("ep", "fleet", "me", "words"), [
    (front_ep(), {}, "front", ["gpu-b, which is not part of this run", "--limit front,gpu-b"]),
    (front_ep(), {"gpu-b": front_ep()}, "front", ["gpu-b runs cosyvoice_exposure=proxy"]),
    (front_ep(), {"gpu-b": backend_ep(front_hosts=["other"])}, "front", ["does not list front"]),
    (backend_ep(), {}, "gpu-b", ["front, whose address is not known", "cosyvoice_private_address for front"]),
    (backend_ep(), {"front": {"private_address": "front.example"}}, "gpu-b", ["is not an IP address"]),
])
def test_fleet_inconsistencies_are_refused(ep: dict[str, Any], fleet: dict[str, Any], me: str,
                                           words: list[str]) -> None:
    problems = " ".join(fleet_wiring(ep, fleet, me)["problems"])
    for word in words:
        assert word in problems, problems


def test_fleet_reads_endpoints_or_the_inventory_address() -> None:
    hostvars = {"gpu-b": {"cosyvoice_endpoint": backend_ep()}, "front": {"cosyvoice_private_address": "10.0.0.1"},
                "gone": {}}
    fleet = cosyvoice_fleet(["gpu-b", "front", "gone", "missing"], hostvars)
    assert set(fleet) == {"gpu-b", "front"}
    assert fleet["gpu-b"]["instances"][0]["port"] == 7870 and fleet["front"] == {"private_address": "10.0.0.1"}


def test_rollout_targets() -> None:
    assert cosyvoice_rollout_targets(backend_ep(instances=2), "gpu-b") == [
        {"front": "front", "servers": ["10.0.0.2:7870", "10.0.0.2:7871"]}]
    assert cosyvoice_rollout_targets(front_ep(), "front") == [{"front": "front", "servers": ["127.0.0.1:7860"]}]
    assert cosyvoice_rollout_targets(proxy(instances=2, needs_gpu=False), "h") == [
        {"front": "h", "servers": ["127.0.0.1:7860", "127.0.0.1:7861"]}]
    assert cosyvoice_rollout_targets(proxy(), "h") == []
    assert cosyvoice_rollout_targets(cosyvoice_endpoint("direct", public_address="h"), "h") == []


def test_the_front_names_a_backend_that_does_not_answer() -> None:
    ev = three_instances()
    ev["host"] = "front"
    ev["upstreams"] = dg.cosyvoice_upstream_evidence(
        [{"host": "gpu-b", "address": "10.0.0.2", "port": 7870}, {"host": "gpu-b", "address": "10.0.0.2", "port": 7871}],
        {"results": [{"status": 200, "msg": "OK"},
                     {"status": -1, "msg": "Status code was -1 and not [200]: Request failed: <urlopen error timed out>"}]})
    result = dg.cosyvoice_diagnose(ev)
    assert result["check"] == "upstream.gpu-b:7871" and result["layer"] == "service"
    assert "<urlopen error timed out>" in result["cause"] and "--limit gpu-b,front" in result["fix"]
    assert {c["id"]: c["status"] for c in result["checks"]}["upstream.gpu-b:7870"] == "ok"


def test_a_backends_remote_checks_name_the_front() -> None:
    ev = three_instances()
    ev["endpoint"] = backend_ep()
    ev["instances"] = []
    ev["listeners"] = ss(app_line("0.0.0.0:7870"))
    ev["expected"]["app_unit"] = ev["service"]["unit"] = "cosyvoice.service"
    ev["pid_units"] = {"812": "cosyvoice.service"}
    ev["proxy_service"]["properties"] = {}
    ev["firewall"] = {"checked": False, "note": "off"}
    ev["remote"] = {"checked": True, "from": "front", "address": "10.0.0.2", "ca": "system CAs",
                    "tcp": [{"port": 7870, "ok": False, "msg": "Timeout when waiting for 10.0.0.2:7870"}],
                    "http": {"url": "http://10.0.0.2:7870/", "status": -1, "ok": False, "msg": "timed out"},
                    "auth": {"checked": True, "kind": "none"},
                    "backend": {"checked": True, "port": 7870, "reachable": False}}
    result = dg.cosyvoice_diagnose(ev)
    assert result["layer"] == "client", result
    assert "the front proxy host front cannot connect to 10.0.0.2:7870" in result["cause"], result["cause"]
    statuses = {c["id"]: c["status"] for c in result["checks"]}
    assert statuses["bind.public"] == "ok" and statuses["bind.backend_remote"] == "ok"


def test_rollout_fronts_merge_a_batch_per_front() -> None:
    batch = [[{"front": "a", "servers": ["10.0.0.2:7870"]}], [{"front": "a", "servers": ["10.0.0.3:7870"]}],
             [{"front": "a", "servers": ["127.0.0.1:7860"]}], []]
    assert cosyvoice_rollout_fronts([t for targets in batch for t in targets]) == [
        {"front": "a", "servers": ["10.0.0.2:7870", "10.0.0.3:7870", "127.0.0.1:7860"]}]
