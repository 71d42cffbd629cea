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
