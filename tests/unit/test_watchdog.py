"""The health watchdog's decisions (roles/cosyvoice/files/watchdog)."""

from __future__ import annotations

import cosyvoice_watchdog as wd  # roles/cosyvoice/files/watchdog, on sys.path through tests/conftest.py


def test_healthy_resets_the_count():
    d = wd.decide(True, "", previous_failures=2, threshold=3)
    assert (d.restart, d.failures) == (False, 0)


def test_failures_count_up_then_restart():
    d1 = wd.decide(False, "connection refused", 0, 3)
    d2 = wd.decide(False, "no answer within 10 s", d1.failures, 3)
    d3 = wd.decide(False, "no answer within 10 s", d2.failures, 3)
    assert [d.restart for d in (d1, d2, d3)] == [False, False, True]
    assert "3 times in a row" in d3.reason and "no answer" in d3.reason
    assert d3.failures == 0


def test_gpu_memory_over_the_limit_restarts_even_when_healthy():
    d = wd.decide(True, "", 0, 3, gpu_used_mib=30000, gpu_max_mib=20000)
    assert d.restart and "30000 MiB" in d.reason


def test_gpu_limit_off_or_unknown_usage_does_nothing():
    assert not wd.decide(True, "", 0, 3, gpu_used_mib=30000, gpu_max_mib=0).restart
    assert not wd.decide(True, "", 0, 3, gpu_used_mib=None, gpu_max_mib=100).restart


def test_parse_compute_apps_sums_the_pid():
    out = "1234, 1500\n999, 80\n1234, 500\n"
    assert wd.parse_compute_apps(out, 1234) == 2000
    assert wd.parse_compute_apps(out, 42) is None
    assert wd.parse_compute_apps("No devices were found\n", 1234) is None


def test_probe_reports_refused_connections():
    ok, error = wd.probe("http://127.0.0.1:9/healthz", timeout=1)
    assert not ok and error
