"""cosyvoice.deploy.host_files: the module run against a temp dir, the unit-file entries the role builds."""

from __future__ import annotations

import grp as _grp
import json
import os
import pwd
import subprocess
import sys
from pathlib import Path

from ansible_collections.cosyvoice.deploy.plugins.filter.cosyvoice_endpoint import (
    instance_units,
    service_units,
    unit_files,
)
from ansible_collections.cosyvoice.deploy.plugins.module_utils.firewall_ufw import default_input_policy
from tests.lib.targets import PROJECT

MODULE = PROJECT / "plugins" / "modules" / "host_files.py"
ME = pwd.getpwuid(os.getuid()).pw_name
GROUP = _grp.getgrgid(os.getgid()).gr_name


def run_module(paths: list[dict], check: bool = False, diff: bool = False) -> dict:
    """The module as Ansible runs it: JSON arguments on stdin, JSON result on stdout."""
    entries = [{"owner": ME, "group": GROUP, **p} for p in paths]
    payload = {"ANSIBLE_MODULE_ARGS": {"paths": entries, "_ansible_check_mode": check, "_ansible_diff": diff}}
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PROJECT / "collections"), *sys.path]))
    proc = subprocess.run([sys.executable, str(MODULE)], input=json.dumps(payload), capture_output=True, text=True,
                          env=env, check=False)
    return json.loads(proc.stdout)


def mode(path: Path) -> str:
    return oct(path.stat().st_mode & 0o777)


def test_directories_files_and_absent_paths_in_one_run_then_nothing_to_do(tmp_path: Path):
    (tmp_path / "old.timer").write_text("stale\n")
    paths = [
        {"path": str(tmp_path / "base" / "launcher"), "state": "directory"},
        {"path": str(tmp_path / "state"), "state": "directory", "mode": "0750"},
        {"path": str(tmp_path / "base" / "unit.service"), "content": "[Unit]\n"},
        {"path": str(tmp_path / "base" / "run"), "content": "#!/bin/sh\n", "mode": "0755"},
        {"path": str(tmp_path / "old.timer"), "state": "absent"},
        {"path": str(tmp_path / "never-there"), "state": "absent"},
    ]
    first = run_module(paths)
    assert first["changed"] and first["changed_paths"] == [p["path"] for p in paths[:5]]
    assert (tmp_path / "base" / "unit.service").read_text() == "[Unit]\n"
    assert mode(tmp_path / "state") == "0o750" and mode(tmp_path / "base" / "launcher") == "0o755"
    assert mode(tmp_path / "base" / "run") == "0o755" and mode(tmp_path / "base" / "unit.service") == "0o644"
    assert not (tmp_path / "old.timer").exists()
    again = run_module(paths)
    assert not again["changed"] and again["changed_paths"] == [] and "diff" not in again


def test_drift_shown_in_check_mode_with_diff_then_repaired(tmp_path: Path):
    unit = tmp_path / "unit.service"
    paths = [{"path": str(unit), "content": "--host 127.0.0.1\n"}, {"path": str(tmp_path / "d"), "state": "directory"}]
    run_module(paths)
    unit.write_text("--host 0.0.0.0\n")
    (tmp_path / "d").chmod(0o700)
    check = run_module(paths, check=True, diff=True)
    assert check["changed_paths"] == [str(unit), str(tmp_path / "d")]
    assert check["diff"] == [{"before_header": str(unit), "after_header": str(unit),
                              "before": "--host 0.0.0.0\n", "after": "--host 127.0.0.1\n"}]
    assert unit.read_text() == "--host 0.0.0.0\n" and mode(tmp_path / "d") == "0o700"  # check mode changed nothing
    fixed = run_module(paths)
    assert fixed["changed"] and unit.read_text() == "--host 127.0.0.1\n" and mode(tmp_path / "d") == "0o755"


def test_validate_runs_on_the_new_content_and_keeps_the_old_file_on_failure(tmp_path: Path):
    conf = tmp_path / "site.conf"
    conf.write_text("good\n")
    bad = run_module([{"path": str(conf), "content": "bad\n", "validate": "grep -q good %s"}])
    assert bad.get("failed") and "failed validation" in bad["msg"] and conf.read_text() == "good\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".host_files.")]  # no temp file left
    ok = run_module([{"path": str(conf), "content": "good too\n", "validate": "grep -q good %s"}])
    assert ok["changed"] and conf.read_text() == "good too\n"
    same = run_module([{"path": str(conf), "content": "good too\n", "validate": "false %s"}])
    assert not same["changed"]  # validate runs only when the content differs


def test_wrong_kind_of_path_fails_with_what_to_do(tmp_path: Path):
    (tmp_path / "file").write_text("x")
    (tmp_path / "dir").mkdir()
    as_dir = run_module([{"path": str(tmp_path / "file"), "state": "directory"}])
    assert as_dir["failed"] and "is not a directory" in as_dir["msg"]
    as_file = run_module([{"path": str(tmp_path / "dir"), "content": "x"}])
    assert as_file["failed"] and "is a directory" in as_file["msg"]
    relative = run_module([{"path": "etc/x", "content": "x"}])
    assert relative["failed"] and "absolute" in relative["msg"]


def test_unit_files_render_enabled_units_and_remove_disabled_ones():
    inst = {"index": 0, "name": "cosyvoice", "port": 7860, "gpu": ""}
    units = instance_units([inst], "cosyvoice", watchdog=True, scheduled_restart=False)
    files = unit_files(units)
    assert files[0] == {"path": "/etc/systemd/system/cosyvoice-watchdog.service", "state": "file",
                        "template": "watchdog.service.j2", "mode": "0644",
                        "template_vars": {"__cosyvoice_instance": inst}}
    assert files[2:] == [{"path": "/etc/systemd/system/cosyvoice-scheduled-restart.service", "state": "absent"},
                         {"path": "/etc/systemd/system/cosyvoice-scheduled-restart.timer", "state": "absent"}]
    [svc] = unit_files(service_units([inst]), validate="systemd-analyze verify %s:{unit}")
    assert svc["validate"] == "systemd-analyze verify %s:cosyvoice.service"
    assert svc["template"] == "cosyvoice.service.j2"


def test_ufw_default_input_policy():
    assert default_input_policy('IPV6=yes\nDEFAULT_INPUT_POLICY="DROP"\n') == "DROP"
    assert default_input_policy('DEFAULT_INPUT_POLICY="ACCEPT"\n') == "ACCEPT"
    assert default_input_policy("") is None and default_input_policy(None) is None


def test_link_made_and_repointed_atomically(tmp_path: Path):
    site = tmp_path / "available.conf"
    site.write_text("server {}\n")
    link = tmp_path / "enabled.conf"
    entry = {"path": str(link), "state": "link", "target": str(site)}
    assert run_module([entry])["changed"] and os.readlink(link) == str(site)
    assert not run_module([entry])["changed"]
    link.unlink()
    link.write_text("a copy someone made\n")
    assert run_module([entry], check=True)["changed"] and not link.is_symlink()
    assert run_module([entry])["changed"] and os.readlink(link) == str(site)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".host_files.")]


def test_missing_parents_get_the_directory_mode(tmp_path: Path):
    """Like ansible.builtin.file: /etc/nginx/ssl made for /etc/nginx/ssl/site at 0700 is 0700 too."""
    run_module([{"path": str(tmp_path / "ssl" / "site"), "state": "directory", "mode": "0700"}])
    assert mode(tmp_path / "ssl") == "0o700" and mode(tmp_path / "ssl" / "site") == "0o700"


def test_attributes_only_of_a_path_written_elsewhere(tmp_path: Path):
    cert = tmp_path / "site.crt"
    entry = {"path": str(cert), "state": "attributes", "mode": "0644"}
    # Not there yet (another task issues it): nothing to do, nothing created.
    assert run_module([entry])["changed"] is False and not cert.exists()
    cert.write_text("PEM\n")
    cert.chmod(0o600)
    result = run_module([entry], check=True)
    assert result["changed"] is True and mode(cert) == "0o600"
    result = run_module([entry])
    assert result["changed_paths"] == [str(cert)] and mode(cert) == "0o644"
    assert cert.read_text() == "PEM\n"  # the content is never touched
    assert run_module([entry])["changed"] is False
