"""How site.yml wires the layers (plugins/filter/site_wiring.py): derived values, inventory overrides."""

from __future__ import annotations

from ansible_collections.cosyvoice.deploy.plugins.filter.cosyvoice_endpoint import cosyvoice_endpoint
from ansible_collections.cosyvoice.deploy.plugins.filter.site_wiring import WIRING, site_wiring

USERS = [{"name": "alice", "password": "s3cret-password"}]
DIRECT = cosyvoice_endpoint("direct", server_port=7860, public_address="203.0.113.7", auth=True)
PROXY = cosyvoice_endpoint("proxy", server_port=7860, public_address="tts.example.com", root_path="/tts",
                           proxy_https_port=8443, auth=True)


def wire(endpoint, host_vars=None, **kw):
    kw.setdefault("inventory_hostname", "gpu-1")
    kw.setdefault("auth_users", USERS)
    kw.setdefault("report_dir", "/repo/reports")
    return site_wiring(endpoint, host_vars or {}, **kw)


def test_every_wired_value_is_derived_when_the_inventory_sets_none():
    out = wire(PROXY)
    assert out["problems"] == [] and out["overridden"] == []
    v = out["values"]
    # The firewall/security-group sources are wired for a fleet's backend only.
    assert set(v) == set(WIRING) - {"os_firewall_allowed_cidrs", "cloud_security_group_cidrs",
                                    "cloud_security_group_cidrs_ipv6"}
    assert v["nginx_proxy_enabled"] is True
    assert v["nginx_proxy_upstream_port"] == 7860 and v["nginx_proxy_https_port"] == 8443
    assert v["nginx_proxy_location"] == "/tts" and v["nginx_proxy_health_path"] == "/tts/healthz"
    assert v["nginx_proxy_server_names"] == ["tts.example.com", "gpu-1"]
    assert v["os_firewall_allowed_ports"] == PROXY["public_ports"] == v["cloud_security_group_ports"]
    assert v["verify_endpoint"] == PROXY and v["verify_auth_users"] == USERS
    assert v["verify_report_dir"] == "/repo/reports"
    assert v["verify_service_user"] == "" and v["verify_allowed_dropins"] == []


def test_direct_mode_has_no_proxy():
    v = wire(DIRECT)["values"]
    assert v["nginx_proxy_enabled"] is False
    assert v["os_firewall_allowed_ports"] == [{"port": 7860, "proto": "tcp", "purpose": "app"}]


def test_inventory_names_nginx_cannot_use_are_not_server_names():
    assert wire(PROXY, inventory_hostname="gpu_1 (lab)")["values"]["nginx_proxy_server_names"] == ["tts.example.com"]


def test_a_settable_inventory_value_wins():
    names = ["tts.example.com", "tts.internal"]
    out = wire(PROXY, {"nginx_proxy_server_names": names})
    assert out["values"]["nginx_proxy_server_names"] == names
    assert out["overridden"] == ["nginx_proxy_server_names"] and out["problems"] == []


def test_an_inventory_port_list_must_keep_the_endpoints_ports():
    extra = [{"port": 7860, "proto": "tcp"}, {"port": 9100, "proto": "tcp"}]
    ok = wire(DIRECT, {"os_firewall_allowed_ports": extra})
    assert ok["values"]["os_firewall_allowed_ports"] == extra and ok["problems"] == []
    bad = wire(DIRECT, {"cloud_security_group_ports": [{"port": 9100, "proto": "tcp"}]})
    assert bad["problems"] == [
        "cloud_security_group_ports (set in the inventory) lacks 7860/tcp, which cosyvoice_endpoint needs open. "
        "Fix it, or remove it to let site.yml derive it from cosyvoice_exposure."]


def test_a_derived_variable_in_the_inventory_fails_naming_what_to_set():
    out = wire(PROXY, {"nginx_proxy_upstream_port": 9000})
    assert out["problems"] == [
        "nginx_proxy_upstream_port is set in the inventory, but site.yml derives it from cosyvoice_server_port "
        "(it would be 7860 here). Remove nginx_proxy_upstream_port and set cosyvoice_server_port instead."]


def test_secrets_are_never_echoed():
    out = wire(PROXY, {"verify_auth_users": [{"name": "x", "password": "other-password"}]})
    assert "s3cret-password" not in out["problems"][0] and "other-password" not in out["problems"][0]
    assert "derives it from cosyvoice_auth_users." in out["problems"][0]


def test_what_an_earlier_wiring_in_this_run_set_is_not_user_input():
    first = wire(PROXY)["values"]
    again = wire(PROXY, dict(first), wired_before=first)
    assert again["problems"] == [] and again["overridden"] == []


AUTODL = cosyvoice_endpoint("direct", server_port="auto", public_address="10.0.0.5", auth=True, platform="autodl")


def test_a_container_platform_turns_the_host_firewall_and_its_posture_off():
    v = wire(AUTODL, process_manager="supervisord")["values"]
    assert v["os_firewall_backend"] == "none" and v["verify_firewall_posture"] == "off"
    assert v["verify_process_manager"] == "supervisord"
    assert v["os_firewall_allowed_ports"] == [{"port": 6006, "proto": "tcp", "purpose": "app"}]
    vm = wire(DIRECT)["values"]
    assert vm["os_firewall_backend"] == "auto" and vm["verify_firewall_posture"] == "fail"
    assert vm["verify_process_manager"] == "systemd"


def test_a_host_firewall_backend_on_a_container_platform_is_refused():
    out = wire(AUTODL, {"os_firewall_backend": "ufw"})
    assert len(out["problems"]) == 1
    assert "os_firewall_backend (set in the inventory) is 'ufw'" in out["problems"][0]
    assert "cosyvoice_platform=autodl" in out["problems"][0]
    assert wire(DIRECT, {"os_firewall_backend": "ufw"})["problems"] == []
