"""`local` exposure: loopback only, unreachable from the controller, served under /tts."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tests.lib.targets import ansible_playbook, container_ip, outcome, recap, task_outcomes, tcp_open  # noqa: E402

PORT = 7870


def test_bound_to_loopback_only(host):
    listeners = host.check_output("ss -H -tlnp 'sport = :%d'" % PORT)
    assert "127.0.0.1:7870" in listeners, listeners
    assert "0.0.0.0:7870" not in listeners and "*:7870" not in listeners


def test_not_reachable_from_the_controller(host):
    assert not tcp_open(container_ip(host), PORT, timeout=2)


def test_served_on_the_host_under_the_root_path(host):
    health = json.loads(host.check_output(f"curl -sf --noproxy '*' http://127.0.0.1:{PORT}/tts/healthz"))
    assert health == {"status": "ok", "engine": "espeak", "sample_rate": 22050, "root_path": "/tts", "port": PORT}
    page = host.check_output(f"curl -sf --noproxy '*' http://127.0.0.1:{PORT}/tts/")
    assert "gradio" in page.lower()


def test_no_login_file_without_users(host):
    assert not host.file("/etc/cosyvoice/auth.json").exists
    assert "--auth-file" not in host.check_output("systemctl cat cosyvoice")


def test_a_host_without_git_got_it_and_the_pinned_checkout(host):
    """prepare.yml removed git: the preflight's read could not read the checkout, so the role read it after
    installing git (source.yml's own read) and checked out the pin."""
    assert host.package("git").is_installed
    head = host.check_output("git -C /opt/cosyvoice/src rev-parse HEAD")
    assert len(head) == 40 and host.run("git -C /opt/cosyvoice/src status --porcelain --untracked-files=no").stdout.strip() == ""


def test_unit_names_the_exposure(host):
    unit = host.check_output("systemctl cat cosyvoice")
    assert "--host 127.0.0.1" in unit and "--port 7870" in unit and "--root-path /tts" in unit


def _converge(*extra: str) -> dict[str, int]:
    proc = ansible_playbook("molecule/cosyvoice_local/converge.yml", *extra)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    return next(iter(recap(proc.stdout).values()))


def _healthy(host) -> bool:
    return host.run(f"curl -sf --noproxy '*' http://127.0.0.1:{PORT}/tts/healthz").rc == 0


def test_switching_a_systemd_host_to_supervisord_and_back(host):
    """cosyvoice_process_manager overrides the detection: the unit is retired for the
    supervisord program (no second process on the port), and back again."""
    _converge("-e", "cosyvoice_process_manager=supervisord")
    assert not host.file("/etc/systemd/system/cosyvoice.service").exists
    assert host.run("systemctl is-active cosyvoice").stdout.strip() != "active"
    deadline = time.monotonic() + 30  # STARTING until it has lived startsecs (5 s)
    while "RUNNING" not in host.check_output("supervisorctl status cosyvoice") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert "RUNNING" in host.check_output("supervisorctl status cosyvoice")
    assert _healthy(host)
    holders = host.check_output("ss -H -tlnp 'sport = :%d'" % PORT)
    assert holders.count("pid=") == 1, holders

    _converge()
    assert host.service("cosyvoice").is_running and host.service("cosyvoice").is_enabled
    assert not host.file("/etc/supervisor/conf.d/cosyvoice.conf").exists
    assert "cosyvoice" not in host.run("supervisorctl status").stdout
    assert _healthy(host)
    assert _converge()["changed"] == 0


def _timer_state(host, name: str) -> tuple[bool, str]:
    unit = f"/etc/systemd/system/{name}"
    return host.file(unit).exists, host.run(f"systemctl is-active {name}").stdout.strip()


def test_watchdog_off_and_planned_restart_on_then_back(host):
    """Timers switched on and off by the inventory: a timer no longer wanted is stopped and its
    unit files removed (found by the same find as the instance units), the wanted ones run."""
    counts = _converge("-e", "cosyvoice_watchdog_enabled=false", "-e", "cosyvoice_scheduled_restart='*-*-* 04:00:00'")
    assert counts["changed"] > 0
    assert _timer_state(host, "cosyvoice-watchdog.timer") == (False, "inactive")
    assert not host.file("/etc/systemd/system/cosyvoice-watchdog.service").exists
    assert _timer_state(host, "cosyvoice-scheduled-restart.timer") == (True, "active")
    assert "OnCalendar=*-*-* 04:00:00" in host.file("/etc/systemd/system/cosyvoice-scheduled-restart.timer").content_string
    assert _healthy(host)

    _converge()
    assert _timer_state(host, "cosyvoice-scheduled-restart.timer") == (False, "inactive")
    assert not host.file("/etc/systemd/system/cosyvoice-scheduled-restart.service").exists
    assert _timer_state(host, "cosyvoice-watchdog.timer") == (True, "active")
    assert host.file("/opt/cosyvoice/cosyvoice-watchdog").mode == 0o755
    assert _converge()["changed"] == 0


def test_the_layer_alone_reads_the_host_itself(host):
    """playbooks/cosyvoice.yml without site.yml's preflight: the role validates and takes its one read of the
    host itself (tasks/host_read.yml), so a converged host is a no-op and a missing model still fails before
    anything changes."""
    proc = ansible_playbook("playbooks/cosyvoice.yml", "-e", "@molecule/shared/fixture-vars.yml")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    assert "host_read.yml" in proc.stdout  # included by main.yml, not skipped
    assert next(iter(recap(proc.stdout).values()))["changed"] == 0
    before = host.check_output("systemctl show -p ActiveEnterTimestamp cosyvoice")
    proc = ansible_playbook("playbooks/cosyvoice.yml", "-e", "@molecule/shared/fixture-vars.yml",
                            "-e", "cosyvoice_model_local_path=/srv/no-model-here")
    assert proc.returncode != 0
    assert "cosyvoice_model_local_path=/srv/no-model-here is missing cosyvoice3.yaml" in " ".join(proc.stdout.split())
    counts = next(iter(recap(proc.stdout).values()))
    assert counts["changed"] == 0 and counts["failed"] == 1
    assert host.check_output("systemctl show -p ActiveEnterTimestamp cosyvoice") == before
    assert _healthy(host)


def test_the_proxy_layer_alone_looks_for_a_site_itself(host):
    """playbooks/proxy.yml without site.yml's preflight, on a host whose exposure has no proxy: the
    nginx_proxy role prepares and takes its own read (disable.yml: with the site off, only whether the
    site file is there), finds no site and changes nothing."""
    proc = ansible_playbook("playbooks/proxy.yml", "-e", "@molecule/shared/fixture-vars.yml")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert outcome(out, "nginx_proxy : Look for the deployed site") == {"ok"}
    assert outcome(out, "nginx_proxy : Remove the site (nginx_proxy_enabled is false)") == {"included"}
    assert task_outcomes(out)["cosyvoice.deploy.nginx_proxy : Remove the site"] == {"skipping"}  # no site found
    assert next(iter(recap(proc.stdout).values()))["changed"] == 0
    assert not host.file("/etc/nginx/sites-available/cosyvoice.conf").exists

