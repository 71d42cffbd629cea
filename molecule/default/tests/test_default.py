"""Testinfra checks for the default scenario: the host as site.yml leaves it."""


def test_host_is_managed(host):
    assert host.system_info.distribution == "debian"
    assert host.service("systemd-journald").is_running
