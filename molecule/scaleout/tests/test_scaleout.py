"""Scale-out on one host (cosyvoice_instances: 3 behind nginx), as clients and operators see it.

From the controller to the container's IP only: three instances on 127.0.0.1:7860-7862,
nginx spreading new browsers across them and keeping one browser on one instance (the
affinity cookie), a killed instance skipped without a failed request and back on its
own, a stopped one named by the diagnosis and repaired by a re-run, bad input refused
in the preflight, and the instance count changed both ways.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import ssl
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tests.lib.gradio_api import synthesize, wav_stats  # noqa: E402
from tests.lib.targets import ansible_playbook, container_ip, figure, recap, tcp_open  # noqa: E402

CERT = "/etc/nginx/ssl/cosyvoice/cosyvoice.crt"
SITE = "/etc/nginx/sites-available/cosyvoice.conf"
USER = ("tester", "molecule-scaleout-pw")  # fixture from molecule.yml
COOKIE = "cosyvoice_route"
INSTANCES = {f"cosyvoice-{i}": 7860 + i for i in range(3)}
CONVERGE = "molecule/scaleout/converge.yml"


def units_running(host) -> bool:  # type: ignore[no-untyped-def]
    return all(host.service(name).is_running for name in INSTANCES)


@pytest.fixture(scope="module", autouse=True)
def three_instances(host) -> None:  # type: ignore[no-untyped-def]
    """The last test changes the instance count; a repeated `molecule verify` converges back first."""
    if not units_running(host):
        ansible_playbook(CONVERGE, check=True)


@pytest.fixture(scope="module")
def ip(host) -> str:  # type: ignore[no-untyped-def]
    return container_ip(host)


@pytest.fixture(scope="module")
def cafile(host, tmp_path_factory) -> str:  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("tls") / "cosyvoice.crt"
    path.write_text(host.file(CERT).content_string)
    return str(path)


def get(ip: str, cafile: str, path: str = "/healthz", cookie: str = "") -> tuple[int, dict[str, str], bytes]:
    """One HTTPS request through nginx (TLS verified against the deployed certificate), no cookie jar."""
    conn = http.client.HTTPSConnection(ip, 443, context=ssl.create_default_context(cafile=cafile), timeout=20)
    try:
        conn.request("GET", path, headers={"Cookie": f"{COOKIE}={cookie}"} if cookie else {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def new_browser(ip: str, cafile: str) -> tuple[str, int]:
    """A first request without the cookie: (the cookie nginx hands out, the port of the instance that answered)."""
    status, headers, body = get(ip, cafile)
    assert status == 200, (status, body[:300])
    match = re.match(rf"{COOKIE}=([^;]+);", headers.get("set-cookie", ""))
    assert match, f"no affinity cookie on a first response: {headers}"
    assert "Secure" in headers["set-cookie"] and "HttpOnly" in headers["set-cookie"], headers["set-cookie"]
    return match.group(1), json.loads(body)["port"]


def served_by(ip: str, cafile: str, cookie: str) -> int:
    status, headers, body = get(ip, cafile, cookie=cookie)
    assert status == 200, (status, body[:300])
    assert "set-cookie" not in headers, f"a browser with the cookie got a new one: {headers}"
    return int(json.loads(body)["port"])


def main_pid(host, unit: str) -> int:  # type: ignore[no-untyped-def]
    return int(host.check_output(f"systemctl show -p MainPID --value {unit}"))


# ------------------------------------------------------------------------------------ the host


def test_three_hardened_instances_on_loopback(host) -> None:  # type: ignore[no-untyped-def]
    assert not host.file("/etc/systemd/system/cosyvoice.service").exists
    for name, port in INSTANCES.items():
        service = host.service(name)
        assert service.is_running and service.is_enabled, name
        unit = host.file(f"/etc/systemd/system/{name}.service").content_string
        assert re.search(rf"--port {port}\b", unit) and "--host 127.0.0.1" in unit, unit
        for line in ("User=cosyvoice", "Restart=always", "NoNewPrivileges=yes", "ProtectSystem=strict"):
            assert line in unit, f"{name}: {line} missing"
        assert host.service(f"{name}-watchdog.timer").is_running, f"{name}: no watchdog"
        assert host.socket(f"tcp://127.0.0.1:{port}").is_listening
        assert not host.socket(f"tcp://0.0.0.0:{port}").is_listening
    listeners = host.check_output("ss -Htlnp 'sport >= :7860 and sport <= :7870'")
    assert len(listeners.splitlines()) == 3, listeners
    site = host.file(SITE).content_string
    assert "hash $cosyvoice_affinity consistent;" in site
    assert len(re.findall(r"server 127\.0\.0\.1:786[0-2] max_fails=1 fail_timeout=10s;", site)) == 3, site


def test_backend_ports_closed_from_the_controller(ip) -> None:
    assert tcp_open(ip, 443)
    assert [port for port in INSTANCES.values() if tcp_open(ip, port)] == []


# ------------------------------------------------------------------------------------ balancing


def test_new_browsers_spread_and_each_stays_on_its_instance(ip, cafile) -> None:
    """30 first visits: a cookie each, spread over the instances; then 10 requests per browser
    with its cookie land on the instance that answered its first request."""
    browsers = [new_browser(ip, cafile) for _ in range(30)]
    spread = Counter(port for _, port in browsers)
    figure(f"scaleout: 30 new browsers over the instances: {dict(sorted(spread.items()))}")
    assert len(spread) >= 2, spread
    for cookie, first in browsers[:8]:
        assert {served_by(ip, cafile, cookie) for _ in range(10)} == {first}, cookie


def test_gradio_sessions_work_through_the_balancer(ip, cafile) -> None:
    """Six clients (a cookie jar each, like browsers) synthesize through nginx: Gradio's queue
    join and its event stream are two requests, which must reach the same process."""
    def one(n: int) -> tuple[int, float, int]:
        return wav_stats(synthesize(f"https://{ip}/", f"scale out {n}", basic_auth=USER, cafile=cafile))

    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(one, range(6)))
    for rate, seconds, peak in results:
        assert rate > 0 and seconds > 0.2 and peak > 0, results


def test_a_killed_instance_is_skipped_and_comes_back(host, ip, cafile) -> None:  # type: ignore[no-untyped-def]
    """kill -9 the instance a browser is on: its requests keep succeeding (nginx moves them on),
    and once systemd has restarted it they return to it."""
    cookie = next(c for c, port in (new_browser(ip, cafile) for _ in range(60)) if port == 7861)
    old_pid = main_pid(host, "cosyvoice-1")
    host.run(f"kill -9 {old_pid}")
    start = time.monotonic()
    ok, failed, ports, back_after = 0, [], Counter(), None
    while time.monotonic() - start < 90:
        try:
            port = served_by(ip, cafile, cookie)
            ok += 1
            ports[port] += 1
            if port == 7861 and time.monotonic() - start > 1:
                back_after = time.monotonic() - start
                break
        except (AssertionError, OSError) as exc:
            failed.append(repr(exc)[:200])
        time.sleep(0.2)
    figure(f"scaleout: kill -9 cosyvoice-1: {ok} requests with its cookie, {len(failed)} failed, served by "
           f"{dict(ports)}, back on 7861 after {back_after and round(back_after, 1)} s")
    assert failed == [], failed[:5]
    assert back_after is not None, f"never served by 7861 again: {dict(ports)}"
    assert main_pid(host, "cosyvoice-1") not in (0, old_pid)
    assert units_running(host)


def test_a_stopped_instance_is_diagnosed_and_the_rerun_repairs_it(host, ip, cafile, tmp_path) -> None:  # type: ignore[no-untyped-def]
    host.run("systemctl stop cosyvoice-2")
    # Still serving through the other two.
    assert all(get(ip, cafile)[0] == 200 for _ in range(6))
    proc = ansible_playbook("playbooks/diagnose.yml", "-e", f"verify_report_dir={tmp_path}")
    out = proc.stdout + proc.stderr
    report = json.loads((tmp_path / "cv-scaleout" / "report.json").read_text())
    assert proc.returncode != 0, out[-3000:]
    assert (report["layer"], report["check"]) == ("service", "instance.active.2"), report
    assert "2 of 3 instances serve" in report["cause"], report["cause"]
    assert "systemctl restart cosyvoice-2.service" in report["fix"], report["fix"]
    statuses = {c["id"]: c["status"] for c in report["checks"]}
    assert statuses["instance.active.1"] == "ok" and statuses["http"] == "ok", statuses

    proc = ansible_playbook(CONVERGE, "--tags", "cosyvoice")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert host.service("cosyvoice-2").is_running


# ------------------------------------------------------------------------------------ bad input

TWO_GPUS = [f"0000:{bus}:00.0 3D controller [0302]: NVIDIA Corporation GH100 [H100 SXM5 80GB] [10de:2330] (rev a1)"
            for bus in ("1b", "2c")]
BAD_INPUTS = {
    "zero": ({"cosyvoice_instances": 0}, "cosyvoice_instances is 0: at least 1 instance is needed"),
    "duplicate_ports": ({"cosyvoice_instances": [{"port": 7860}, {"port": 7861}, {"port": 7861}]},
                        "cosyvoice_instances: port 7861 is given to instances 1 and 2"),
    "more_than_gpus": ({"cosyvoice_engine": "cosyvoice", "nvidia_driver_detect_override": TWO_GPUS,
                        "cosyvoice_instances": 3},
                       "cosyvoice_instances is 3, but 2 NVIDIA GPU(s) were detected on this host"),
    "direct_mode": ({"cosyvoice_exposure": "direct"}, "with cosyvoice_exposure=direct: users would need 3 ports"),
}


def test_bad_instance_inputs_fail_in_preflight_and_change_nothing(host) -> None:  # type: ignore[no-untyped-def]
    def state() -> list[object]:
        return [(host.file(f"/etc/systemd/system/{n}.service").sha256sum, main_pid(host, n)) for n in INSTANCES] + [
            host.file(SITE).sha256sum]

    before = state()

    def run(case: str) -> tuple[str, object]:
        return case, ansible_playbook(CONVERGE, "-e", json.dumps(BAD_INPUTS[case][0]), timeout=600)

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(pool.map(run, BAD_INPUTS))
    for case, proc in results.items():
        out = proc.stdout + proc.stderr  # type: ignore[attr-defined]
        assert proc.returncode != 0, f"{case}: site.yml passed:\n{out[-3000:]}"  # type: ignore[attr-defined]
        assert BAD_INPUTS[case][1] in " ".join(out.split()), f"{case}: message missing:\n{out[-3000:]}"
        assert "PLAY [CosyVoice3 service" not in out, f"{case}: got past the preflight:\n{out[-3000:]}"
    assert state() == before


# ------------------------------------------------------------------------------------ changing N


def converge(*extra: str) -> tuple[dict[str, int], float]:
    start = time.monotonic()
    proc = ansible_playbook(CONVERGE, *extra)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    return recap(proc.stdout)["cv-scaleout"], time.monotonic() - start


def test_changing_the_instance_count_retires_and_adds_units(host, ip, cafile) -> None:  # type: ignore[no-untyped-def]
    """3 -> [0, 1] (GPU list: pinned) -> 1 (the plain unit): what is no longer wanted is stopped
    and removed, one process per port, nginx follows. (The first converge of a later run brings
    back 3: the module fixture; 1 -> 3 is what the scenario's own converge did.)"""
    _, two_s = converge("-e", json.dumps({"cosyvoice_instances": [0, 1]}))
    assert not host.file("/etc/systemd/system/cosyvoice-2.service").exists
    assert not host.file("/etc/systemd/system/cosyvoice-2-watchdog.timer").exists
    assert not host.socket("tcp://127.0.0.1:7862").is_listening
    for i in (0, 1):
        env = host.check_output(f"systemctl show -p Environment --value cosyvoice-{i}")
        assert f"CUDA_VISIBLE_DEVICES={i}" in env.split(), env
    assert {served_by(ip, cafile, new_browser(ip, cafile)[0]) for _ in range(12)} <= {7860, 7861}

    _, one_s = converge("-e", "cosyvoice_instances=1")
    assert host.service("cosyvoice").is_running
    assert [n for n in INSTANCES if host.file(f"/etc/systemd/system/{n}.service").exists] == []
    assert host.socket("tcp://127.0.0.1:7860").is_listening and not host.socket("tcp://127.0.0.1:7861").is_listening
    site = host.file(SITE).content_string
    assert "hash $" not in site and "server 127.0.0.1:7860;" in site
    status, headers, body = get(ip, cafile)
    assert status == 200 and json.loads(body)["port"] == 7860 and "set-cookie" not in headers

    figure(f"scaleout: 3 -> 2 instances {two_s:.0f} s, 2 -> 1 {one_s:.0f} s")
