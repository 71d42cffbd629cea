"""molecule/drift: re-running site.yml repairs drift; bad input fails before any change; security figures.

The host was converged with site.yml in `proxy` exposure (nginx with TLS and login on
80/443, the app on 127.0.0.1:7860) and ufw. Every `ansible-playbook` run below goes from
the controller against molecule's inventory, with the scenario's converge.yml (it loads
the same fixture variables as the converge step). Tests run in file order:

1. bad input   - site.yml with 15 bad variable sets (3 runs at a time): each fails in the
                 preflight play naming the variable, and the host is unchanged;
2. drift       - break the host by hand the way operators do (8 drifts), prove the drift is
                 real from the controller, then:
                 `--check --diff` reports every drift, names the broken layer, changes nothing;
                 one normal run (-v) repairs everything and the verify role reports OK;
                 the next run changes nothing;
3. direct mode - a unit bound to 127.0.0.1 on a host whose inventory says `direct`
                 shows up in `--check --diff` as the bind line;
4. security    - systemd exposure, no secret in any run's output (-v included), secret
                 files' modes and owners, a full TCP port scan from the controller.

Figures (timings, exposure, scan) are printed and written to reports/drift-figures.json;
docs/SECURITY.md quotes them.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import ssl
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tests.lib.drift import Run, checksums, host_state, scan, state_diff, ufw_rules  # noqa: E402
from tests.lib.targets import PROJECT, ansible_playbook, container_ip, figure, systemd_exposure, tcp_open  # noqa: E402

CONVERGE = str(Path(__file__).resolve().parents[1] / "converge.yml")
RENDER_UNIT = str(Path(__file__).resolve().parents[1] / "render_unit.yml")
GPU_UNIT = "/tmp/cosyvoice-unit-variants/gpu-host/cosyvoice.service"  # written by render_unit.yml
USER = ("drifter", "molecule-drift-pw-7Qx")  # fixture from molecule.yml
UNIT = "/etc/systemd/system/cosyvoice.service"
SITE = "/etc/nginx/sites-available/cosyvoice.conf"
HTPASSWD = "/etc/nginx/cosyvoice.htpasswd"
CERT = "/etc/nginx/ssl/cosyvoice/cosyvoice.crt"
KEY = "/etc/nginx/ssl/cosyvoice/cosyvoice.key"
LAUNCHER = "/opt/cosyvoice/launcher/cosyvoice_launcher/server.py"
CHECKOUT_FILE = "/opt/cosyvoice/src/cosyvoice/cli/__init__.py"  # tracked in the fixture and upstream
STAMP = "/opt/cosyvoice/venv/.cosyvoice-requirements.json"
AUTH_JSON = "/etc/cosyvoice/auth.json"
BACKEND_PORT, DRIFT_PORT = 7860, 7861
BAD_INPUT_JOBS = int(os.environ.get("DRIFT_BAD_INPUT_JOBS", "3"))

FIGURES: dict[str, Any] = {}
RUNS: dict[str, Run] = {}  # every ansible-playbook run of this module, for the secret check
STATES: dict[str, dict[str, str]] = {}


def playbook(label: str, *args: str, book: str = CONVERGE) -> Run:
    """site.yml (through the scenario's converge.yml) from the controller; timed and kept."""
    started = time.monotonic()
    proc = ansible_playbook(book, *args, timeout=900)
    run = Run.of(proc, time.monotonic() - started)
    RUNS[label] = run
    FIGURES.setdefault("runs_s", {})[label] = round(run.seconds, 1)
    figure(f"drift: {label}: ansible-playbook {' '.join(args)} -> rc {run.returncode} in {run.seconds:.1f} s")
    return run


def report(name: str) -> dict[str, Any]:
    """The verify role's report.json for the host, as the last run wrote it."""
    return json.loads((PROJECT / "reports" / name / "report.json").read_text(encoding="utf-8"))


def flat(text: str) -> str:
    """Output with YAML line wrapping and '' quoting undone, for message matching."""
    return " ".join(text.split()).replace("''", "'")


@pytest.fixture(scope="module", autouse=True)
def ansible_env() -> Iterator[None]:
    """Failures on stdout, next to their task (molecule's ansible.cfg sends them to stderr)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ANSIBLE_DISPLAY_FAILED_STDERR", "false")
        yield


@pytest.fixture(scope="module", autouse=True)
def figures() -> Iterator[None]:
    yield
    out = PROJECT / "reports" / "drift-figures.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(FIGURES, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    figure("drift: figures " + json.dumps(FIGURES, sort_keys=True))


@pytest.fixture(scope="module")
def name(host) -> str:  # type: ignore[no-untyped-def]
    return str(host.backend.get_hostname())


@pytest.fixture(scope="module")
def ip(host) -> str:  # type: ignore[no-untyped-def]
    return container_ip(host)


@pytest.fixture(scope="module")
def cafile(host, tmp_path_factory: pytest.TempPathFactory) -> str:  # type: ignore[no-untyped-def]
    """The deployed self-signed certificate: what clients trust."""
    path = tmp_path_factory.mktemp("tls") / "cosyvoice.crt"
    path.write_text(host.file(CERT).content_string)
    return str(path)


@pytest.fixture(scope="module")
def baseline(host) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """The converged host, before anything below touches it."""
    assert host.service("cosyvoice").is_running, "the converge did not leave the service running"
    return host_state(host)


def https_status(ip: str, cafile: str, path: str = "/", auth: tuple[str, str] | None = None) -> int:
    conn = http.client.HTTPSConnection(ip, 443, context=ssl.create_default_context(cafile=cafile), timeout=15)
    headers = {"Authorization": "Basic " + base64.b64encode(":".join(auth).encode()).decode()} if auth else {}
    try:
        conn.request("GET", path, headers=headers)
        return conn.getresponse().status
    finally:
        conn.close()


def http_status(ip: str, port: int, path: str) -> int:
    conn = http.client.HTTPConnection(ip, port, timeout=5)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


# =========================================================================== 1. bad input


@dataclass(frozen=True)
class BadInput:
    id: str
    extra_vars: dict[str, Any]
    # Fragments of the failure message; the first names the variable. Loose where either the
    # argument spec ("value of X must be one of: ...") or the role's own assert may say it.
    expect: tuple[str, ...]
    secret: str = ""  # must not appear in the output


# Cases that fail in later validate entry points come first: they take longest.
BAD_INPUTS = [
    BadInput("firewall_cidr_invalid", {"os_firewall_allowed_cidrs": ["10.0.0.0/33"]},
             ("os_firewall_allowed_cidrs", "is not a valid CIDR")),
    BadInput("firewall_backend_unknown", {"os_firewall_backend": "iptables"},
             ("os_firewall_backend", "one of", "iptables")),
    BadInput("cloud_provider_unknown", {"cloud_provider": "azure"},
             ("cloud_provider", "one of", "azure")),
    BadInput("tls_provided_without_cert", {"nginx_proxy_tls_mode": "provided"},
             ("nginx_proxy_tls_mode=provided needs a certificate", "nginx_proxy_tls_cert_path")),
    BadInput("nginx_server_name_invalid", {"nginx_proxy_server_names": ["bad name"]},
             ("nginx_proxy_server_names", "'bad name' is not a host name")),
    BadInput("model_path_missing", {"cosyvoice_model_local_path": "/srv/fixtures/models/missing"},
             ("cosyvoice_model_local_path=/srv/fixtures/models/missing is missing",)),
    BadInput("server_port_out_of_range", {"cosyvoice_server_port": 70000},
             ("cosyvoice_server_port", "must be within 1-65535, got 70000")),
    BadInput("proxy_http_port_out_of_range", {"cosyvoice_proxy_http_port": 0},
             ("cosyvoice_proxy_http_port", "must be within 1-65535, got 0")),
    BadInput("bind_address_not_an_address", {"cosyvoice_server_name": "0.0.0.0/0"},
             ("cosyvoice_server_name", "'0.0.0.0/0' is neither an IP address nor a hostname")),
    BadInput("exposure_unknown", {"cosyvoice_exposure": "public"},
             ("cosyvoice_exposure", "one of", "public")),
    BadInput("auth_user_without_password", {"cosyvoice_auth_users": [{"name": "drifter"}]},
             ("cosyvoice_auth_users", "missing required arguments: password")),
    BadInput("auth_password_too_short", {"cosyvoice_auth_users": [{"name": "drifter", "password": "Zq7-x"}]},
             ("cosyvoice_auth_users", "a password of at least 8 characters"), secret="Zq7-x"),
    BadInput("direct_bound_to_loopback", {"cosyvoice_exposure": "direct", "cosyvoice_server_name": "127.0.0.1"},
             ("cosyvoice_server_name is 127.0.0.1 with cosyvoice_exposure=direct",)),
    BadInput("direct_without_login", {"cosyvoice_exposure": "direct", "cosyvoice_auth_users": []},
             ("cosyvoice_exposure=direct puts the UI on the network with no login", "cosyvoice_auth_users")),
    BadInput("proxy_port_collision", {"cosyvoice_proxy_https_port": BACKEND_PORT},
             ("cosyvoice_server_port 7860 collides with the proxy's port",)),
]


@dataclass
class BadRuns:
    runs: dict[str, Run]
    state_after: dict[str, str]


@pytest.fixture(scope="module")
def bad_runs(host, baseline) -> BadRuns:  # type: ignore[no-untyped-def]
    """Every bad input through site.yml, BAD_INPUT_JOBS at a time; then the host's state."""
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=BAD_INPUT_JOBS) as pool:
        runs = pool.map(lambda c: playbook(f"bad_input/{c.id}", "-e", json.dumps(c.extra_vars)), BAD_INPUTS)
        by_case = dict(zip([c.id for c in BAD_INPUTS], runs, strict=True))
    took = time.monotonic() - started
    FIGURES["bad_input"] = {"cases": len(BAD_INPUTS), "jobs": BAD_INPUT_JOBS, "total_s": round(took, 1),
                            "slowest_s": round(max(r.seconds for r in by_case.values()), 1)}
    figure(f"drift: {len(BAD_INPUTS)} bad-input runs, {BAD_INPUT_JOBS} at a time: {took:.1f} s")
    return BadRuns(by_case, host_state(host))


def test_bad_input_catalogue_is_large_enough():
    assert len(BAD_INPUTS) >= 12
    assert len({c.id for c in BAD_INPUTS}) == len(BAD_INPUTS)


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[c.id for c in BAD_INPUTS])
def test_bad_input_fails_in_preflight_naming_the_variable(bad_runs: BadRuns, case: BadInput):
    run = bad_runs.runs[case.id]
    assert run.returncode != 0, f"accepted: {case.extra_vars}\n{run.tail()}"
    failures = run.failures()
    assert failures, run.tail()
    assert {f.play for f in failures} == {"Preflight - validate all input before any change"}, failures
    assert not any(p.startswith("NVIDIA driver") for p in run.plays()), "a layer ran after the failure"
    assert all(c["changed"] == 0 for c in run.recap().values()), run.recap()
    starts = [i for i in (run.output.find("[ERROR]"), run.output.find(failures[0].line)) if i >= 0]
    message = flat(run.output[min(starts):])
    for fragment in case.expect:
        assert fragment in message, f"{fragment!r} not in the failure:\n{run.tail(3000)}"
    if case.secret:
        assert case.secret not in run.output


def test_bad_input_changed_nothing_on_the_host(bad_runs: BadRuns, baseline):
    assert bad_runs.state_after == baseline, state_diff(baseline, bad_runs.state_after)


# =========================================================================== 2. drift


@dataclass(frozen=True)
class Drift:
    id: str
    what: str  # what the operator did, and why it matters
    inject: str  # shell, run on the host
    task: str  # the task of site.yml that reports (and repairs) it; a prefix of "collection.role : name"
    diff: tuple[str, ...] = ()  # lines of the task's --diff (path: `diff_path`)
    diff_path: str = ""
    items: tuple[str, ...] = ()  # loop items reported changed


# In this order; the service is stopped last, so the drift can be seen from outside first.
DRIFTS = [
    Drift("unit_bind_all_interfaces",
          "unit edited: the app listens on 0.0.0.0, around nginx, TLS and the login (in proxy exposure the "
          "unit binds 127.0.0.1; see test_direct_unit_bound_to_loopback_is_reported for the opposite case)",
          f"sed -i 's/--host 127.0.0.1 /--host 0.0.0.0 /' {UNIT}",
          "cosyvoice.deploy.cosyvoice : Template the systemd unit",
          diff=("-    --host 0.0.0.0 \\", "+    --host 127.0.0.1 \\"), diff_path=UNIT),
    Drift("unit_port_changed",
          f"unit edited: port {DRIFT_PORT} instead of {BACKEND_PORT}; nginx's upstream is gone (502)",
          f"sed -i 's/--port {BACKEND_PORT} /--port {DRIFT_PORT} /' {UNIT}"
          " && systemctl daemon-reload && systemctl restart cosyvoice",
          "cosyvoice.deploy.cosyvoice : Template the systemd unit",
          diff=(f"-    --port {DRIFT_PORT} \\", f"+    --port {BACKEND_PORT} \\"), diff_path=UNIT),
    Drift("firewall_rule_deleted", "ufw rule for 443/tcp deleted (IPv4 and IPv6)",
          "ufw delete allow 443/tcp",
          "cosyvoice.deploy.os_firewall : Ufw | Allow the service ports",
          items=("443/tcp from 0.0.0.0/0", "443/tcp from ::/0")),
    Drift("firewall_disabled", "ufw disabled: every port of the host open",
          "ufw disable",
          "cosyvoice.deploy.os_firewall : Ufw | Enable ufw"),
    Drift("nginx_site_edited", "nginx site edited: login switched off, reloaded",
          f"sed -i 's/^    auth_basic \"CosyVoice\";/    auth_basic off;  # debugging/' {SITE}"
          " && nginx -t -q && systemctl reload nginx",
          "cosyvoice.deploy.nginx_proxy : Deploy the site configuration",
          diff=("-    auth_basic off;  # debugging", '+    auth_basic "CosyVoice";'), diff_path=SITE),
    Drift("htpasswd_removed", "htpasswd file removed",
          f"rm {HTPASSWD}",
          "cosyvoice.deploy.nginx_proxy : Make the htpasswd file hold exactly the login users"),
    # Drift the first read of a role (package_state) must see, or the task that repairs it is skipped.
    Drift("account_changed", "service account given a login shell and another comment (usermod by hand)",
          "usermod -s /bin/bash -c debugging cosyvoice",
          "cosyvoice.deploy.cosyvoice : Create the service user"),
    Drift("watchdog_timer_disabled", "health watchdog timer stopped and disabled",
          "systemctl disable --now cosyvoice-watchdog.timer",
          "cosyvoice.deploy.cosyvoice : Enable and start the timers"),
    Drift("nginx_disabled", "nginx disabled at boot (still running: the next reboot loses the site)",
          "systemctl disable nginx",
          "cosyvoice.deploy.nginx_proxy : Start nginx now and at boot"),
    Drift("certificate_mode", "certificate made private by hand (0600, another owner)",
          f"chmod 0600 {CERT} && chown www-data {CERT}",
          "cosyvoice.deploy.nginx_proxy : Install the config test wrapper, create the TLS directory"),
    Drift("key_mode", "private key made world-readable by hand (0644)",
          f"chmod 0644 {KEY}",
          "cosyvoice.deploy.nginx_proxy : Generate the private key"),
    Drift("checkout_modified", "a tracked file of the pinned checkout edited (a local hotfix)",
          f"echo '# local hotfix' >> {CHECKOUT_FILE}",
          "cosyvoice.deploy.cosyvoice : Check out CosyVoice at the pinned commit"),
    # A converged host's fingerprint is checked in the requirements' module run (no run of its own).
    Drift("fingerprint_mode", "the installed environment's fingerprint made writable by everyone (0666)",
          f"chmod 0666 {STAMP}",
          "cosyvoice.deploy.cosyvoice : Write the requirements and constraints"),
    Drift("launcher_modified", "launcher file modified (a local hotfix)",
          f"echo '# local hotfix' >> {LAUNCHER}",
          "cosyvoice.deploy.cosyvoice : Install the launcher package"),
    Drift("uv_removed", "the installer's binary removed from its tools venv (pip's metadata still lists it)",
          "rm /opt/cosyvoice/tools/bin/uv",
          "cosyvoice.deploy.cosyvoice : Install uv into its own tools venv"),
    Drift("service_stopped_disabled", "service stopped and disabled",
          "systemctl disable --now cosyvoice",
          "cosyvoice.deploy.cosyvoice : Enable and start each instance"),
]

# What else a check run may report: handlers of the drifted files, and ufw's default
# policy (with ufw disabled, `ufw status verbose` shows no policy, so check mode predicts a
# change that the real run, after re-enabling, does not make).
CONSEQUENCES = ("cosyvoice.deploy.cosyvoice : Restart cosyvoice",
                "cosyvoice.deploy.nginx_proxy : Reload the nginx service",
                "cosyvoice.deploy.os_firewall : Ufw | Deny incoming traffic by default")
READ_ONLY_PLAYS = ("Test fixtures as inventory variables", "Preflight - validate all input before any change",
                   "Verify - users can reach the service")


@pytest.fixture(scope="module")
def drifted(host, ip, cafile, baseline, bad_runs: BadRuns) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Inject every drift; return what a user sees with the service still up, and the host state."""
    seen: dict[str, Any] = {}
    started = time.monotonic()
    for drift in DRIFTS:
        if drift.id == "service_stopped_disabled":
            seen["app_port_from_controller"] = tcp_open(ip, DRIFT_PORT)
            seen["app_health_from_controller"] = http_status(ip, DRIFT_PORT, "/healthz")
            seen["https_without_login"] = https_status(ip, cafile, "/")
            seen["ufw"] = host.check_output("ufw status").strip()
        result = host.run(drift.inject)
        assert result.rc == 0, f"{drift.id}: {drift.inject}: {result.stderr}"
    FIGURES["inject_s"] = round(time.monotonic() - started, 1)
    seen["state"] = host_state(host)
    seen["uv"] = host.run("/opt/cosyvoice/tools/bin/uv --version").rc
    return seen


def test_drift_is_real(drifted, baseline):
    """Each drift is a change an operator could notice, not a no-op."""
    assert drifted["app_port_from_controller"], "the app did not answer on 0.0.0.0:7861"
    assert drifted["app_health_from_controller"] == 200  # no TLS, no login: around the proxy
    assert drifted["https_without_login"] != 401  # the login is off (502: the upstream port moved)
    assert drifted["ufw"] == "Status: inactive"
    before, after = checksums(baseline), checksums(drifted["state"])
    for path in (UNIT, SITE, LAUNCHER):
        assert before[path] != after.get(path), path
    assert HTPASSWD in before and HTPASSWD not in after
    assert "cosyvoice.service inactive disabled" in drifted["state"]["units"]
    assert "cosyvoice-watchdog.timer inactive disabled" in drifted["state"]["units"]
    assert "nginx.service active disabled" in drifted["state"]["units"]
    assert "M cosyvoice/cli/__init__.py" in drifted["state"]["checkout"]
    assert f"644 root:root {KEY}" in drifted["state"]["modes"] and f"666 root:root {STAMP}" in drifted["state"]["modes"]
    assert ":/bin/bash" in drifted["state"]["accounts"] and f"600 www-data:root {CERT}" in drifted["state"]["modes"]
    assert drifted["uv"] != 0  # the installer is gone


@pytest.fixture(scope="module")
def check_run(host, drifted) -> Run:  # type: ignore[no-untyped-def]
    run = playbook("check", "--check", "--diff")
    STATES["after_check"] = host_state(host)
    return run


def _changed(run: Run, prefix: str) -> list[str]:
    return [line for task, lines in run.changed_tasks().items() if task.startswith(prefix) for line in lines]


@pytest.mark.parametrize("drift", DRIFTS, ids=[d.id for d in DRIFTS])
def test_check_reports_the_drift(check_run, drift: Drift):
    lines = _changed(check_run, drift.task)
    assert lines, f"{drift.id}: {drift.task!r} did not report changed; changed: {list(check_run.changed_tasks())}"
    for item in drift.items:
        assert any(f"(item={item})" in line for line in lines), (item, lines)
    if drift.diff:
        diff = check_run.diff(drift.diff_path)
        assert diff, f"no --diff for {drift.diff_path}"
        for expected in drift.diff:
            assert expected in diff.splitlines(), f"{expected!r} not in:\n{diff}"


def test_check_completes_and_names_the_broken_layer(check_run, name):
    """The verify play diagnoses the drifted host (the first broken layer: the stopped service)."""
    failures = check_run.failures()
    # verify only reports in check mode (playbooks/verify.yml); should it fail the play,
    # that must be its own "Fail on the first broken layer" and nothing else.
    assert check_run.returncode == 0 or [f.task for f in failures] == ["verify : Fail on the first broken layer"], \
        check_run.tail()
    diagnosis = report(name)
    assert not diagnosis["ok"]
    assert diagnosis["layer"] == "service", diagnosis["message"]
    status = {c["id"]: c["status"] for c in diagnosis["checks"]}
    assert status["service.active"] == "fail" and status["service.enabled"] == "fail", status


def test_check_changes_nothing(check_run, drifted):
    after = STATES["after_check"]
    assert after == drifted["state"], state_diff(drifted["state"], after)


def test_check_read_only_plays_report_no_change(check_run):
    """Preflight, the fixtures and verify only read, in check mode too."""
    in_read_only = [r for r in check_run.changed() if r.play in READ_ONLY_PLAYS]
    assert not in_read_only, in_read_only


def test_check_reports_nothing_else(check_run):
    """Only the drifted resources (and their handlers) show as changed: no task claims a change
    in check mode that a real run would not make."""
    expected = tuple(d.task for d in DRIFTS) + CONSEQUENCES
    unexpected = [t for t in check_run.changed_tasks() if not t.startswith(expected)]
    assert not unexpected, f"tasks reporting changed in check mode without drift: {unexpected}"


@pytest.fixture(scope="module")
def repair_run(host, check_run) -> Run:  # type: ignore[no-untyped-def]
    return playbook("repair", "-v")


def test_repair_run_succeeds_and_verify_passes(repair_run, name):
    assert repair_run.returncode == 0, repair_run.tail()
    diagnosis = report(name)
    assert diagnosis["ok"], diagnosis["message"]
    text = (PROJECT / "reports" / name / "report.txt").read_text(encoding="utf-8")
    assert "Result:   OK" in text, text


@pytest.mark.parametrize("drift", DRIFTS, ids=[d.id for d in DRIFTS])
def test_repair_run_fixed_the_drift(repair_run, drift: Drift):
    assert _changed(repair_run, drift.task), f"{drift.id}: {drift.task!r} did not change anything in the repair run"


def test_repaired_host_is_the_converged_host(host, repair_run, baseline, ip, cafile):
    after = host_state(host)
    before_sums, after_sums = checksums(baseline), checksums(after)
    for path in (UNIT, SITE, LAUNCHER):
        assert after_sums[path] == before_sums[path], path
    htpasswd = host.file(HTPASSWD)
    assert (htpasswd.user, htpasswd.group, htpasswd.mode) == ("root", "www-data", 0o640)
    assert htpasswd.content_string.startswith(f"{USER[0]}:$apr1$")
    assert after["units"] == baseline["units"], state_diff(baseline, after)
    assert after["accounts"] == baseline["accounts"], state_diff(baseline, after)
    assert after["checkout"] == baseline["checkout"], state_diff(baseline, after)
    assert f"644 root:root {CERT}" in after["modes"] and f"600 root:root {KEY}" in after["modes"]
    assert f"644 root:root {STAMP}" in after["modes"]
    assert host.run("/opt/cosyvoice/tools/bin/uv --version").stdout.startswith("uv ")
    assert after["listeners"] == baseline["listeners"], state_diff(baseline, after)
    assert ufw_rules(after) == ufw_rules(baseline), state_diff(baseline, after)
    assert after["firewall"].startswith("Status: active")
    # What users see: login required again, and it works; the app only behind nginx.
    assert https_status(ip, cafile, "/") == 401
    assert https_status(ip, cafile, "/", auth=USER) in (200, 307)
    assert not tcp_open(ip, DRIFT_PORT, timeout=1)
    assert not tcp_open(ip, BACKEND_PORT, timeout=1)


@pytest.fixture(scope="module")
def second_run(repair_run) -> Run:
    return playbook("second_run")


def test_second_run_changes_nothing(second_run):
    assert second_run.returncode == 0, second_run.tail()
    recap = second_run.recap()
    assert recap and all(c["changed"] == 0 for c in recap.values()), \
        f"{recap}: {list(second_run.changed_tasks())}"


# The tasks that change state and that a converged host does not need: each is skipped because
# its role's first read (package_state, git_checkout_state, tls_selfsigned_state, python_env_state,
# os_firewall_facts) found the host as wanted. The drift cases above prove that the same reads make them run when it is not.
SKIPPED_WHEN_CONVERGED = (
    "cosyvoice.deploy.cosyvoice : Create the service group",
    "cosyvoice.deploy.cosyvoice : Create the service user",
    "cosyvoice.deploy.cosyvoice : Check out CosyVoice at the pinned commit",
    "cosyvoice.deploy.cosyvoice : Enable and start each instance",
    "cosyvoice.deploy.cosyvoice : Enable and start the timers",
    "cosyvoice.deploy.nginx_proxy : Generate the private key",
    "cosyvoice.deploy.nginx_proxy : Start nginx now and at boot",
    # One read each (python_env_state; os_firewall_facts with the packages): nothing left to do.
    "cosyvoice.deploy.cosyvoice : Record the fingerprint",
    "cosyvoice.deploy.os_firewall : Install | Packages",
    "cosyvoice.deploy.os_firewall : Ufw | Read",
    "cosyvoice.deploy.os_firewall : Ufw | Allow",
    "cosyvoice.deploy.os_firewall : Ufw | Remove",
    "cosyvoice.deploy.os_firewall : Ufw | Deny",
    "cosyvoice.deploy.os_firewall : Ufw | Enable",
    "cosyvoice.deploy.os_firewall : Ufw | Start",
    "cosyvoice.deploy.os_firewall : Foreign | ",
)


def test_second_run_skips_what_a_converged_host_does_not_need(second_run):
    ran = second_run.ran_tasks()
    assert ran, second_run.tail()
    needless = [task for task in ran if task.startswith(SKIPPED_WHEN_CONVERGED)]
    assert not needless, f"ran on a converged host: {needless}"


# =========================================================================== 3. the direct-mode bind


def test_direct_unit_bound_to_loopback_is_reported(host, second_run):
    """The seed's pitfall: a `direct` host whose unit binds 127.0.0.1 (only the host itself can connect).

    This host's unit binds 127.0.0.1 (proxy exposure); seen with the inventory of a direct
    host, `--check --diff` must flag exactly that line, and change nothing.
    """
    before = host.file(UNIT).sha256sum
    run = playbook("direct_check", "--check", "--diff", "--tags", "cosyvoice_service",
                   "-e", json.dumps({"cosyvoice_exposure": "direct"}))
    assert run.returncode == 0, run.tail()
    assert _changed(run, "cosyvoice.deploy.cosyvoice : Template the systemd unit")
    diff = run.diff(UNIT).splitlines()
    assert "-    --host 127.0.0.1 \\" in diff and "+    --host 0.0.0.0 \\" in diff, "\n".join(diff)
    assert host.file(UNIT).sha256sum == before
    assert host.service("cosyvoice").is_running


# =========================================================================== 4. security figures


def _exposure(text: str) -> float:
    for line in text.splitlines():
        if "Overall exposure level" in line:
            return float(line.split(":", 1)[1].split()[0])
    raise AssertionError(f"no exposure figure in: {text[-500:]}")


def test_systemd_exposure(host, repair_run):
    exposure = systemd_exposure(host, "cosyvoice")
    FIGURES["systemd_exposure"] = {"deployed_unit": exposure}
    figure(f"drift: systemd-analyze security cosyvoice: {exposure}")
    assert exposure <= 2.5


def test_systemd_exposure_of_a_gpu_host_unit(host, repair_run):
    """The unit a GPU host gets (GPU device nodes instead of PrivateDevices, no
    MemoryDenyWriteExecute for CUDA, PrivateUsers on), rendered from the role's template and
    analysed offline; the deployed unit analysed the same way, for comparison."""
    run = playbook("render_gpu_unit", book=RENDER_UNIT)
    assert run.returncode == 0, run.tail()
    try:
        deployed = _exposure(host.check_output(f"systemd-analyze security --offline=true --no-pager {UNIT}"))
        text = host.check_output(f"systemd-analyze security --offline=true --no-pager {GPU_UNIT}")
        unit = host.file(GPU_UNIT).content_string
    finally:
        host.run(f"rm -rf {Path(GPU_UNIT).parent.parent}")
    gpu = _exposure(text)
    assert "DeviceAllow=char-nvidiactl rw" in unit and "PrivateUsers=yes" in unit, unit
    FIGURES["systemd_exposure"].update({"deployed_unit_offline": deployed, "gpu_host_unit_offline": gpu})
    figure(f"drift: systemd-analyze security --offline: deployed unit {deployed}, GPU-host unit {gpu}")
    assert gpu <= 2.5, text


def test_secret_files_modes_and_owners(host, repair_run):
    files = {HTPASSWD: ("root", "www-data", 0o640), KEY: ("root", "root", 0o600)}
    found = {}
    for path, wanted in files.items():
        f = host.file(path)
        found[path] = (f.user, f.group, oct(f.mode))
        assert (f.user, f.group, f.mode) == wanted, path
    ssl_dir = host.file("/etc/nginx/ssl")
    assert ssl_dir.mode & 0o077 == 0, oct(ssl_dir.mode)
    # proxy exposure: nginx does the login; no cleartext copy of the password on the host.
    assert not host.file(AUTH_JSON).exists
    FIGURES["secret_files"] = found


def test_password_is_nowhere_on_the_host(host, repair_run):
    """Not in files the project writes, the journal, process arguments or environments."""
    pw = USER[1]
    files = host.run(f"grep -rlF -- '{pw}' /etc /opt/cosyvoice/launcher /opt/cosyvoice/src /var/lib/cosyvoice "
                     "/var/log /root /tmp")
    assert files.stdout.strip() == "", files.stdout
    assert pw not in host.check_output("journalctl --no-pager -o cat")
    procs = host.run("cat /proc/[0-9]*/cmdline /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n'")
    assert pw not in procs.stdout


def test_no_secret_in_any_output(host, repair_run, second_run):
    """The password, its hash and the TLS private key never appear in ansible-playbook output,
    including the -v repair run that rewrote the htpasswd file."""
    assert "repair" in RUNS and RUNS["repair"].args.count("-v") == 1
    pw_hash = host.file(HTPASSWD).content_string.strip().split(":", 1)[1]
    # Lines of the key's PEM; a line that is also in the public key's PEM is public
    # (an EC key's last line is the tail of its public point; -v shows the certificate's public key).
    public = host.check_output(f"openssl pkey -in {KEY} -pubout")
    key_lines = [line for line in host.file(KEY).content_string.splitlines()
                 if line and "-----" not in line and line not in public]
    assert key_lines, "no private line in the key?"
    secrets = {"password": USER[1], "htpasswd hash": pw_hash, **{f"key line {i}": k for i, k in enumerate(key_lines)}}
    leaks = [(label, what) for label, run in RUNS.items() for what, value in secrets.items() if value in run.output]
    FIGURES["secret_grep"] = {"runs": len(RUNS), "bytes": sum(len(r.output) for r in RUNS.values()),
                              "secrets": len(secrets), "leaks": len(leaks)}
    assert not leaks, leaks


def test_only_the_public_ports_answer(ip, repair_run):
    """Every TCP port of the host from the controller: only nginx's 80/443 answer; 22 is
    allowed by the firewall (the admin port) but nothing listens; everything else is dropped."""
    result = scan(ip, range(1, 65536), timeout=1.0, window=8000)
    FIGURES["port_scan"] = {"ports": 65535, "open": result.open, "refused": result.refused,
                            "filtered": len(result.filtered), "errors": len(result.errors),
                            "seconds": round(result.seconds, 1), "timeout_s": result.timeout,
                            "window": result.window}
    figure(f"drift: port scan of {ip}: open {result.open}, refused {result.refused}, "
          f"{len(result.filtered)} filtered, in {result.seconds:.1f} s")
    assert result.open == [80, 443]
    assert set(result.refused) <= {22}, result.refused
    assert not result.errors, dict(list(result.errors.items())[:10])
    assert result.seconds < 120
