"""Scale-out (issue 16), as clients and operators see it: from the controller to the containers only.

The front cv-scaleout runs three instances on 127.0.0.1:7860-7862 behind its nginx, which also
balances the backend cv-scaleout-b (port 7870, admitted from the front only): new browsers
spread over all of them, one browser stays on one instance (the affinity cookie), a killed
instance is skipped without a failed request and comes back on its own, a stopped instance or
backend is named by the diagnosis, bad input is refused in the preflight, the instance count
changes both ways, and playbooks/rolling_update.yml updates one host at a time (a failure stops
it) while a client loop against the URL sees no failed request.
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
import testinfra

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tests.lib.gradio_api import synthesize, wav_stats  # noqa: E402
from tests.lib.targets import ansible_playbook, container_ip, figure, molecule_inventory, recap, tcp_open  # noqa: E402

CERT = "/etc/nginx/ssl/cosyvoice/cosyvoice.crt"
SITE = "/etc/nginx/sites-available/cosyvoice.conf"
USER = ("tester", "molecule-scaleout-pw")  # fixture from molecule.yml
COOKIE = "cosyvoice_route"
INSTANCES = {f"cosyvoice-{i}": 7860 + i for i in range(3)}
FRONT, BACKEND, BACKEND_PORT = "cv-scaleout", "cv-scaleout-b", 7870
CONVERGE = "molecule/scaleout/converge.yml"


def units_running(host) -> bool:  # type: ignore[no-untyped-def]
    return all(host.service(name).is_running for name in INSTANCES)


@pytest.fixture(scope="module", autouse=True)
def front_only(host) -> None:  # type: ignore[no-untyped-def]
    """molecule runs every test once per host: these look at the fleet from the front's run."""
    if host.backend.get_hostname() != FRONT:
        pytest.skip("fleet tests run once, with the front as `host`")


@pytest.fixture(scope="module")
def backend():  # type: ignore[no-untyped-def]
    return testinfra.get_host(f"ansible://{BACKEND}", ansible_inventory=molecule_inventory())


@pytest.fixture(scope="module")
def backend_ip(backend) -> str:  # type: ignore[no-untyped-def]
    return container_ip(backend)


@pytest.fixture(scope="module", autouse=True)
def three_instances(host) -> None:  # type: ignore[no-untyped-def]
    """A test changes the instance count; a repeated `molecule verify` converges back first."""
    if host.backend.get_hostname() == FRONT and not units_running(host):
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


def upstream_servers(host) -> list[str]:  # type: ignore[no-untyped-def]
    return re.findall(r"^\s*server (\S+)(?: max_fails[^;]*)?;", host.file(SITE).content_string, re.MULTILINE)


def test_the_front_balances_the_backend_too(host, backend_ip) -> None:  # type: ignore[no-untyped-def]
    assert upstream_servers(host) == [f"127.0.0.1:{p}" for p in INSTANCES.values()] + [f"{backend_ip}:{BACKEND_PORT}"]


def test_instance_ports_closed_from_the_controller(ip, backend_ip) -> None:
    assert tcp_open(ip, 443)
    assert [port for port in INSTANCES.values() if tcp_open(ip, port)] == []
    # The backend listens on all interfaces, and its firewall admits the front only.
    assert not tcp_open(backend_ip, BACKEND_PORT)


def test_the_backend_answers_the_front(host, backend, backend_ip) -> None:  # type: ignore[no-untyped-def]
    assert backend.socket(f"tcp://0.0.0.0:{BACKEND_PORT}").is_listening
    assert not backend.file(SITE).exists, "a backend runs no nginx site"
    out = host.check_output(f"curl -s -m 5 http://{backend_ip}:{BACKEND_PORT}/healthz")
    assert json.loads(out)["port"] == BACKEND_PORT
    rules = backend.check_output("ufw status")
    allowed = re.findall(rf"^{BACKEND_PORT}/tcp(?: \(v6\))?\s+ALLOW\s+(\S+)", rules, re.MULTILINE)
    assert allowed == [container_ip(host)], rules


# ------------------------------------------------------------------------------------ balancing


def test_new_browsers_spread_and_each_stays_on_its_instance(ip, cafile) -> None:
    """30 first visits: a cookie each, spread over the instances; then 10 requests per browser
    with its cookie land on the instance that answered its first request."""
    browsers = [new_browser(ip, cafile) for _ in range(30)]
    spread = Counter(port for _, port in browsers)
    figure(f"scaleout: 30 new browsers over the instances: {dict(sorted(spread.items()))}")
    assert len(spread) >= 3 and BACKEND_PORT in spread, spread
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


def test_a_stopped_instance_and_a_down_backend_are_diagnosed_and_repaired(host, backend, ip, cafile, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """cosyvoice-2 on the front and the backend's app stopped: the URL keeps answering (nginx skips
    both); one diagnosis run: the front's report names the instance first (its check of the
    backend fails too, with the command that diagnoses it), the backend's report says why; one
    re-run of the cosyvoice layer repairs both."""
    host.run("systemctl stop cosyvoice-2")
    backend.run("systemctl stop cosyvoice")
    assert all(get(ip, cafile)[0] == 200 for _ in range(8))
    proc = ansible_playbook("playbooks/diagnose.yml", "-e", f"verify_report_dir={tmp_path}")
    out = proc.stdout + proc.stderr
    front = json.loads((tmp_path / FRONT / "report.json").read_text())
    back = json.loads((tmp_path / BACKEND / "report.json").read_text())
    assert proc.returncode != 0, out[-3000:]
    assert (front["layer"], front["check"]) == ("service", "instance.active.2"), front
    assert "2 of 3 instances serve" in front["cause"], front["cause"]
    assert "systemctl restart cosyvoice-2.service" in front["fix"], front["fix"]
    checks = {c["id"]: c for c in front["checks"]}
    assert checks["instance.active.1"]["status"] == "ok" and checks["http"]["status"] == "ok", checks
    upstream = checks[f"upstream.{BACKEND}:{BACKEND_PORT}"]
    assert upstream["status"] == "fail" and f"--limit {BACKEND},{FRONT}" in upstream["fix"], upstream
    assert (back["layer"], back["check"]) == ("service", "service.active"), back
    assert "systemctl enable --now cosyvoice.service" in back["fix"], back["fix"]

    proc = ansible_playbook(CONVERGE, "--tags", "cosyvoice")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert host.service("cosyvoice-2").is_running and backend.service("cosyvoice").is_running


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
    # The front alone in direct mode with its 3 instances (and no backends).
    "direct_mode": ({"cosyvoice_exposure": "{{ 'direct' if inventory_hostname == '%s' else 'backend' }}" % FRONT,
                     "cosyvoice_upstream_hosts": []},
                    "with cosyvoice_exposure=direct: users would need 3 ports"),
}


def test_bad_instance_inputs_fail_in_preflight_and_change_nothing(host) -> None:  # type: ignore[no-untyped-def]
    def state() -> list[object]:
        return [(host.file(f"/etc/systemd/system/{n}.service").sha256sum, main_pid(host, n)) for n in INSTANCES] + [
            host.file(SITE).sha256sum]

    before = state()

    def run(case: str) -> tuple[str, object]:
        # The front alone: its endpoint is refused before the fleet is looked at.
        return case, ansible_playbook(CONVERGE, "--limit", FRONT, "-e", json.dumps(BAD_INPUTS[case][0]), timeout=600)

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(pool.map(run, BAD_INPUTS))
    for case, proc in results.items():
        out = proc.stdout + proc.stderr  # type: ignore[attr-defined]
        assert proc.returncode != 0, f"{case}: site.yml passed:\n{out[-3000:]}"  # type: ignore[attr-defined]
        assert BAD_INPUTS[case][1] in " ".join(out.split()), f"{case}: message missing:\n{out[-3000:]}"
        assert "PLAY [CosyVoice3 service" not in out, f"{case}: got past the preflight:\n{out[-3000:]}"
    assert state() == before


# ------------------------------------------------------------------------------------ the fleet


class ClientLoop:
    """Requests against the front's URL from a thread, until stopped: the served ports and every failure."""

    def __init__(self, ip: str, cafile: str) -> None:
        self.ip, self.cafile = ip, cafile
        self.ports: Counter[int] = Counter()
        self.failures: list[str] = []
        self.count = 0
        self._stop = False
        self._cookies = [new_browser(ip, cafile)[0] for _ in range(4)]
        self._pool = ThreadPoolExecutor(max_workers=1)

    def _run(self) -> None:
        n = 0
        while not self._stop:
            cookie = self._cookies[n % 4] if n % 5 else ""  # every 5th request: a new browser
            n += 1
            try:
                status, _, body = get(self.ip, self.cafile, cookie=cookie)
                if status != 200:
                    raise AssertionError(f"HTTP {status}: {body[:200]!r}")
                self.ports[int(json.loads(body)["port"])] += 1
            except (AssertionError, OSError, ValueError) as exc:
                self.failures.append(f"{time.strftime('%H:%M:%S')} {exc!r}"[:300])
            self.count += 1
            time.sleep(0.1)

    def __enter__(self) -> ClientLoop:
        self._future = self._pool.submit(self._run)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop = True
        self._future.result(timeout=30)
        self._pool.shutdown()


def fixture_v2(host) -> str:  # type: ignore[no-untyped-def]
    """The fixture repo's second commit (its branch head; the checkout is at v1, the pinned version)."""
    return host.check_output("git -C /srv/fixtures/CosyVoice for-each-ref --format='%(objectname)' refs/heads").split()[0]


def rollout(*extra: str) -> tuple[object, float]:
    start = time.monotonic()
    proc = ansible_playbook("playbooks/rolling_update.yml", "-e", "@molecule/shared/fixture-vars.yml", *extra,
                            timeout=900)
    return proc, time.monotonic() - start


def test_a_failed_rollout_stops_at_the_first_host_and_the_rest_serve(host, backend, backend_ip, ip, cafile) -> None:  # type: ignore[no-untyped-def]
    """The front comes first (inventory order); its new settings break its app (PYTHONPATH pointed
    away): the rollout stops there, the backend is not touched and serves every request, the
    front's instances stay out of rotation; draining the backend now is refused."""
    def backend_state() -> tuple[object, int]:
        return backend.file("/etc/systemd/system/cosyvoice.service").sha256sum, main_pid(backend, "cosyvoice")

    before = backend_state()
    broken = {"cosyvoice_environment": "{{ {'PYTHONPATH': '/nonexistent'} if inventory_hostname == '%s' else {} }}"
                                       % FRONT}
    with ClientLoop(ip, cafile) as loop:
        proc, seconds = rollout("-e", json.dumps(broken))
    out = proc.stdout + proc.stderr  # type: ignore[attr-defined]
    figure(f"scaleout: failed rollout stopped after {seconds:.0f} s; client loop {loop.count} requests, "
           f"{len(loop.failures)} failed, served by {dict(sorted(loop.ports.items()))}")
    assert proc.returncode != 0, out[-3000:]  # type: ignore[attr-defined]
    assert re.search(rf"failed: \[{FRONT}\]", out), out[-3000:]
    assert backend_state() == before, "the rollout went on to the backend"
    assert loop.failures == [], loop.failures[:5]
    site = host.file(SITE).content_string
    assert len(re.findall(r"server 127\.0\.0\.1:786\d max_fails=1 fail_timeout=10s down;", site)) == 3, site

    # The backend is now the last working server: its drain is refused, nothing changes.
    drain = ansible_playbook("molecule/scaleout/drain.yml", "-e", json.dumps({"servers": [f"{backend_ip}:{BACKEND_PORT}"]}))
    assert drain.returncode != 0 and "would leave no working server" in " ".join(drain.stdout.split()), drain.stdout[-3000:]
    assert host.file(SITE).content_string == site


def test_rolling_version_change_one_host_at_a_time_without_failed_requests(host, backend, ip, cafile) -> None:  # type: ignore[no-untyped-def]
    """cosyvoice_version v1 -> v2 (changed requirements: the environment is rebuilt): the front
    (repaired from the failed rollout), then the backend, each drained first; a client loop
    against the URL sees no failed request."""
    v2 = fixture_v2(host)
    with ClientLoop(ip, cafile) as loop:
        proc, seconds = rollout("-e", f"cosyvoice_version={v2}")
    out = proc.stdout + proc.stderr  # type: ignore[attr-defined]
    figure(f"scaleout: rolling update v1 -> v2 of 2 hosts in {seconds:.0f} s; client loop {loop.count} requests, "
           f"{len(loop.failures)} failed, served by {dict(sorted(loop.ports.items()))}")
    assert proc.returncode == 0, out[-5000:]  # type: ignore[attr-defined]
    assert loop.failures == [], loop.failures[:5]
    # One batch at a time (the front, then the backend): each back in rotation before the next is drained.
    drains = [m.group(1) for m in re.finditer(r"TASK \[(Take|Put) the batch's instances", out)]
    assert drains == ["Take", "Put", "Take", "Put"], drains
    for target in (backend, host):
        assert target.check_output("git -C /opt/cosyvoice/src rev-parse HEAD") == v2
        assert target.service("cosyvoice" if target is backend else "cosyvoice-0").is_running
    assert " down;" not in host.file(SITE).content_string
    assert {7860, 7861, 7862, BACKEND_PORT} <= set(loop.ports), loop.ports


# ------------------------------------------------------------------------------------ changing N


def converge(*extra: str) -> tuple[dict[str, int], float]:
    start = time.monotonic()
    proc = ansible_playbook(CONVERGE, *extra)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    return recap(proc.stdout)["cv-scaleout"], time.monotonic() - start


def test_changing_the_instance_count_retires_units(host, ip, cafile, backend_ip) -> None:  # type: ignore[no-untyped-def]
    """3 -> [1] on the front (one instance, given as a GPU list): cosyvoice-0..2 and their watchdogs
    are stopped and removed before the plain cosyvoice.service takes port 7860, pinned to GPU 1;
    nginx follows. (A later `molecule verify` converges back to 3 first: the module fixture.)"""
    # At the version the rolling update left (no environment rebuild in this run).
    counts, seconds = converge("-e", json.dumps({"cosyvoice_instances": "{{ [1] if inventory_hostname == '%s' else 1 }}"
                                                 % FRONT, "cosyvoice_version": fixture_v2(host)}))
    assert host.service("cosyvoice").is_running
    env = host.check_output("systemctl show -p Environment --value cosyvoice")
    assert "CUDA_VISIBLE_DEVICES=1" in env.split(), env
    for name in INSTANCES:
        assert not host.file(f"/etc/systemd/system/{name}.service").exists, name
        assert not host.file(f"/etc/systemd/system/{name}-watchdog.timer").exists, name
    assert host.socket("tcp://127.0.0.1:7860").is_listening
    assert not host.socket("tcp://127.0.0.1:7861").is_listening and not host.socket("tcp://127.0.0.1:7862").is_listening
    # One local instance and the backend: still two servers to balance.
    assert upstream_servers(host) == ["127.0.0.1:7860", f"{backend_ip}:{BACKEND_PORT}"]
    assert {served_by(ip, cafile, new_browser(ip, cafile)[0]) for _ in range(12)} <= {7860, BACKEND_PORT}
    figure(f"scaleout: 3 instances -> 1 in {seconds:.0f} s ({counts['changed']} changed)")
