"""The callback that loads plugins before the workers fork (plugins/callback/warm_plugins.py).

Run through ansible-playbook: the callback only means something in the
controller's main process, with Ansible's collection loader installed.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.lib.targets import isolated_ansible_env, project_callbacks

_ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK_BIN = Path(sys.executable).with_name("ansible-playbook")

PLAY = """---
- name: Filters and an action plugin of the collection, in forked workers
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: A collection filter
      ansible.builtin.debug:
        msg: "listening={{ 'LISTEN 0 128 0.0.0.0:7860 0.0.0.0:*' | cosyvoice.deploy.ss_listeners | length }}"
    - name: A builtin filter
      ansible.builtin.debug:
        msg: "upper={{ 'x' | upper }}"
    - name: A collection action plugin (check mode, nothing written)
      cosyvoice.deploy.host_files:
        paths:
          - path: "{{ playbook_dir }}/never-written"
            content: "x"
      check_mode: true
"""


def _run(tmp: Path, callbacks: str, **extra: str) -> subprocess.CompletedProcess[str]:
    (tmp / "play.yml").write_text(PLAY, encoding="utf-8")
    env = isolated_ansible_env(tmp, **extra)
    if callbacks:
        env["ANSIBLE_CALLBACKS_ENABLED"] = callbacks
    return subprocess.run(
        [str(PLAYBOOK_BIN), "-i", "localhost,", str(tmp / "play.yml"), "-vvv"],
        capture_output=True, text=True, env=env, cwd=tmp, timeout=120, check=False,
    )


def _messages(out: str) -> list[str]:
    return re.findall(r'"msg": "((?:listening|upper)=[^"]*)"', out)


def test_plugins_are_loaded_before_the_workers_and_results_do_not_change(tmp_path):
    warm = _run(tmp_path, "cosyvoice.deploy.warm_plugins")
    assert warm.returncode == 0, warm.stdout + warm.stderr
    loaded = re.search(r"warm_plugins: (\d+) plugin files loaded before the workers fork", warm.stdout)
    assert loaded, warm.stdout
    # builtin filters and tests, this collection's filters, lookup and action plugins
    assert int(loaded.group(1)) > 20
    assert not (tmp_path / "never-written").exists()

    cold = _run(tmp_path, "")
    assert cold.returncode == 0, cold.stdout + cold.stderr
    assert "warm_plugins:" not in cold.stdout
    assert _messages(warm.stdout) == _messages(cold.stdout) == ["listening=1", "upper=X"]


def test_the_controllers_objects_are_frozen_before_the_workers_fork_unless_turned_off(tmp_path):
    warm = _run(tmp_path, "cosyvoice.deploy.warm_plugins")
    frozen = re.search(r"warm_plugins: (\d+) objects frozen before the workers fork", warm.stdout)
    assert warm.returncode == 0 and frozen, warm.stdout
    assert int(frozen.group(1)) > 10000  # the parsed play, Ansible and the loaded plugins
    off = _run(tmp_path, "cosyvoice.deploy.warm_plugins", COSYVOICE_WARM_PLUGINS_FREEZE="false")
    assert off.returncode == 0, off.stdout + off.stderr
    assert "plugin files loaded" in off.stdout and "objects frozen" not in off.stdout
    assert _messages(warm.stdout) == _messages(off.stdout) == ["listening=1", "upper=X"]


def test_an_unknown_collection_is_skipped_quietly(tmp_path):
    result = _run(tmp_path, "cosyvoice.deploy.warm_plugins", COSYVOICE_WARM_PLUGINS_COLLECTIONS="no.such,cosyvoice.deploy")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "warm_plugins:" in result.stdout
    assert _messages(result.stdout) == ["listening=1", "upper=X"]


def test_molecule_runs_with_the_callbacks_of_ansible_cfg():
    """molecule writes its own ansible.cfg: .config/molecule/config.yml names the same callbacks
    (warm_plugins, profile_tasks) through the environment, and must not drift from ansible.cfg."""
    import yaml

    config = yaml.safe_load((_ROOT / ".config" / "molecule" / "config.yml").read_text(encoding="utf-8"))
    molecule = config["provisioner"]["env"]["ANSIBLE_CALLBACKS_ENABLED"]
    assert [c.strip() for c in molecule.split(",")] == [c.strip() for c in project_callbacks().split(",")]
