"""The layered vars loader every role uses (plugins/lookup/distro_vars.py)."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleLookupError
from ansible_collections.cosyvoice.deploy.plugins.lookup.distro_vars import LookupModule, candidates

DEBIAN12 = {"os_family": "Debian", "distribution": "Debian", "distribution_major_version": "12",
            "distribution_version": "12.8"}
UBUNTU24 = {"os_family": "Debian", "distribution": "Ubuntu", "distribution_major_version": "24",
            "distribution_version": "24.04"}


def test_candidates_least_specific_first():
    assert candidates(DEBIAN12) == ["default.yml", "Debian.yml", "Debian-12.yml", "Debian-12.8.yml"]
    assert candidates(UBUNTU24) == ["default.yml", "Debian.yml", "Ubuntu.yml", "Debian-24.yml", "Ubuntu-24.yml",
                                    "Ubuntu-24.04.yml"]


def _lookup(tmp_path, facts, names, **kw):
    for name in names:
        (tmp_path / name).write_text("---\n")
    return [p.rsplit("/", 1)[1] for p in LookupModule().run([str(tmp_path)], variables={"ansible_facts": facts}, **kw)]


def test_existing_files_in_layer_order(tmp_path):
    files = ["main.yml", "default.yml", "Debian.yml", "Ubuntu-22.yml", "Ubuntu-24.yml", "RedHat.yml"]
    assert _lookup(tmp_path, UBUNTU24, files) == ["default.yml", "Debian.yml", "Ubuntu-24.yml"]


def test_no_file_for_the_distribution_fails_naming_it(tmp_path):
    with pytest.raises(AnsibleLookupError, match="no distribution variables for Debian 12.8"):
        _lookup(tmp_path, DEBIAN12, ["RedHat.yml"])
    assert _lookup(tmp_path, DEBIAN12, [], required=False) == []
