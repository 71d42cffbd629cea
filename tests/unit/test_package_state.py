"""cosyvoice.deploy.package_state: reading dpkg-query and rpm output."""

from __future__ import annotations

from ansible_collections.cosyvoice.deploy.plugins.modules.package_state import dpkg_installed, rpm_installed


def test_only_fully_installed_dpkg_packages_count():
    out = "ii |nginx\nrc |ufw\nun |python3-passlib\nii |libc6:amd64\niF |half-configured\n"
    assert dpkg_installed(out) >= {"nginx", "libc6", "libc6:amd64"}
    assert not {"ufw", "python3-passlib", "half-configured"} & dpkg_installed(out)


def test_rpm_lists_names_and_says_what_is_missing():
    out = "nginx\npackage python3-passlib is not installed\nfirewalld\n"
    assert rpm_installed(out) == {"nginx", "firewalld"}
