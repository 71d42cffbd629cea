"""The strategy that decides false conditions and runs controller-only actions without a
worker (plugins/strategy/linear.py).

Run through ansible-playbook: one playbook, with Ansible's own linear strategy and with
this one; every task's result on every host (JSON callback) must be the same, and the
tasks this strategy keeps in the controller must really run there (no worker forked).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.lib.targets import PROJECT, isolated_ansible_env, project_setting

PLAYBOOK_BIN = Path(sys.executable).with_name("ansible-playbook")

# Two hosts that differ in one variable, so that a condition is false on one only.
INVENTORY = """\
[targets]
alpha flag=true
beta flag=false

[targets:vars]
ansible_connection=local
"""

ROLE_TASKS = """\
- name: Role task (its arguments validated first, in the controller)
  ansible.builtin.set_fact:
    role_saw: "{{ role_input }}"
"""

ROLE_SPECS = """\
argument_specs:
  main:
    short_description: test role
    options:
      role_input:
        type: int
        required: true
"""

INCLUDED = """\
- name: Included task
  ansible.builtin.set_fact:
    included_here: "{{ inventory_hostname }}"
"""

PLAY = """\
- name: Every kind of task the strategy handles, and those it leaves to workers
  hosts: targets
  gather_facts: false
  handlers:
    - name: A handler
      ansible.builtin.debug:
        msg: handler ran on {{ inventory_hostname }}
    - name: A skipped handler
      ansible.builtin.command: "true"
      changed_when: false
      when: not flag
  tasks:
    - name: Which process runs a controller-only action (first)
      ansible.builtin.set_fact:
        pid_one: "{{ lookup('ansible.builtin.pipe', 'echo $PPID') }}"
    - name: Which process runs a controller-only action (second)
      ansible.builtin.set_fact:
        pid_two: "{{ lookup('ansible.builtin.pipe', 'echo $PPID') }}"
    - name: Which process evaluates a false condition
      ansible.builtin.command: "true"
      when: lookup('ansible.builtin.pipe', 'echo $PPID >> ' ~ playbook_dir ~ '/cond-' ~ inventory_hostname) is string and false
    - name: False on beta only, registered
      ansible.builtin.command: echo ran
      register: maybe
      changed_when: false
      when: flag | bool
    - name: What the skipped task registered
      ansible.builtin.debug:
        var: maybe
    - name: A condition on a connection variable the worker adds
      ansible.builtin.debug:
        msg: local
      when: ansible_connection == 'local'
    - name: A condition that fails to evaluate
      ansible.builtin.debug:
        msg: never
      when: no_such_variable == 1
      ignore_errors: true
    - name: A block skipped as a whole
      when: not (flag | bool)
      block:
        - name: Inside the skipped block
          ansible.builtin.debug:
            msg: beta only
    - name: A skipped include
      ansible.builtin.include_tasks: missing.yml
      when: false
    - name: An include that runs (its file name templated by the process that runs it)
      ansible.builtin.include_tasks: >-
        {{ 'included.yml' if lookup('ansible.builtin.pipe', 'echo $PPID >> ' ~ playbook_dir ~ '/include-' ~ inventory_hostname)
           is string else 'missing.yml' }}
    - name: A role with an argument spec
      ansible.builtin.include_role:
        name: specced
      vars:
        role_input: 3
    - name: A secret, not logged
      ansible.builtin.set_fact:
        secret: hunter2
      no_log: true
    - name: A skipped secret
      ansible.builtin.debug:
        msg: "{{ secret }}"
      no_log: true
      when: false
    - name: A failing assertion, ignored
      ansible.builtin.assert:
        that: flag | bool
        fail_msg: flag is off
      ignore_errors: true
    - name: Rescue after a failure in the controller
      block:
        - name: Fail on beta
          ansible.builtin.fail:
            msg: beta fails
          when: not (flag | bool)
      rescue:
        - name: Rescued
          ansible.builtin.debug:
            msg: rescued {{ inventory_hostname }}
    - name: Variables from a file
      ansible.builtin.include_vars:
        file: extra.yml
    - name: A loop (to a worker)
      ansible.builtin.set_fact:
        looped: "{{ (looped | default([])) + [item] }}"
      loop: [1, 2]
      when: item > 1
    - name: A cacheable fact
      ansible.builtin.set_fact:
        cached: "{{ from_file }}"
        cacheable: true
    - name: A changed task notifies
      ansible.builtin.command: "true"
      changed_when: true
      notify: [A handler, A skipped handler]
    - name: Check mode, skipped
      ansible.builtin.command: "true"
      check_mode: true
      when: false
    - name: The end
      ansible.builtin.debug:
        msg: "{{ maybe.skipped | default(false) }} {{ included_here }} {{ role_saw }} {{ cached }} {{ looped }}"
"""


def _run(tmp: Path, strategy: str, **extra: str) -> dict[str, Any]:
    tmp.mkdir()
    (tmp / "inventory").write_text(INVENTORY, encoding="utf-8")
    (tmp / "play.yml").write_text(PLAY, encoding="utf-8")
    (tmp / "included.yml").write_text(INCLUDED, encoding="utf-8")
    (tmp / "extra.yml").write_text("from_file: 42\n", encoding="utf-8")
    for sub, text in (("tasks/main.yml", ROLE_TASKS), ("meta/argument_specs.yml", ROLE_SPECS)):
        (tmp / "roles/specced" / sub).parent.mkdir(parents=True, exist_ok=True)
        (tmp / "roles/specced" / sub).write_text(text, encoding="utf-8")
    env = isolated_ansible_env(
        tmp,
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
        ANSIBLE_STRATEGY=strategy,
        ANSIBLE_DEPRECATION_WARNINGS="false",
        **extra,
    )
    proc = subprocess.run(
        [str(PLAYBOOK_BIN), "-i", "inventory", "play.yml"],
        capture_output=True, text=True, env=env, cwd=tmp, timeout=180, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = json.loads(proc.stdout.replace(str(tmp), "RUN"))  # results name the files they read
    out["cond_pids"] = {h: (tmp / f"cond-{h}").read_text().split() for h in ("alpha", "beta")}
    out["include_pids"] = {h: (tmp / f"include-{h}").read_text().split() for h in ("alpha", "beta")}
    return out


# Times, process ids, task ids and the run's folder differ between any two runs.
_VARIABLE = {"duration", "pid_one", "pid_two", "start", "end", "delta", "id", "path"}


def _by_host(run: dict[str, Any]) -> dict[str, list[tuple[str, Any]]]:
    """Each host's results in order: (task name, result). The JSON callback lists a task once
    for all hosts under Ansible's linear strategy and once per host under any other."""
    hosts: dict[str, list[tuple[str, Any]]] = {}
    for play in run["plays"]:
        for task in play["tasks"]:
            for host, result in task["hosts"].items():
                hosts.setdefault(host, []).append((task["task"]["name"], _scrub(result)))
    return hosts


def _scrub(value: Any) -> Any:
    """A result without what differs between any two runs (times, process ids)."""
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items() if k not in _VARIABLE}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    base = tmp_path_factory.mktemp("strategy")
    runs = {name: _run(base / name, name) for name in ("linear", "cosyvoice.deploy.linear")}
    # The actions in workers, as for a fleet on a controller with CPUs to spare.
    runs["workers"] = _run(base / "workers", "cosyvoice.deploy.linear", COSYVOICE_STRATEGY_ACTIONS="worker")
    return runs


def test_every_result_is_the_one_ansibles_linear_strategy_gives(runs: dict[str, dict[str, Any]]) -> None:
    ours, theirs = runs["cosyvoice.deploy.linear"], runs["linear"]
    assert _by_host(ours) == _by_host(theirs) == _by_host(runs["workers"])
    assert ours["stats"] == runs["workers"]["stats"]
    assert len(_by_host(ours)["beta"]) > 20
    assert ours["stats"] == theirs["stats"]
    # The cases the playbook is there for really happened.
    stats = ours["stats"]
    assert stats["beta"]["rescued"] == 1 and stats["alpha"]["rescued"] == 0
    assert stats["alpha"]["ignored"] == 1 and stats["beta"]["ignored"] == 2  # the when error; the assert on beta
    tasks = {t["task"]["name"]: t["hosts"] for t in theirs["plays"][0]["tasks"]}
    assert tasks["False on beta only, registered"]["beta"]["skipped"] is True
    assert tasks["What the skipped task registered"]["beta"]["maybe"]["false_condition"] == "flag | bool"
    assert tasks["A skipped secret"]["alpha"]["skipped"] is True
    assert "hunter2" not in json.dumps(ours) and "hunter2" not in json.dumps(theirs)
    assert tasks["The end"]["alpha"]["msg"] == "False alpha 3 42 [2]"
    assert tasks["The end"]["beta"]["msg"] == "True beta 3 42 [2]"


def test_controller_only_actions_and_false_conditions_need_no_worker(runs: dict[str, dict[str, Any]]) -> None:
    """`echo $PPID` in a lookup names the process that templated it: a worker forked for that
    task and host, or the controller's one process."""
    def pids(run: dict[str, Any]) -> list[str]:
        names = ("Which process runs a controller-only action (first)",
                 "Which process runs a controller-only action (second)")
        return [next(iter(r["ansible_facts"].values()))
                for t in run["plays"][0]["tasks"] if t["task"]["name"] in names for r in t["hosts"].values()]

    linear, ours = runs["linear"], runs["cosyvoice.deploy.linear"]
    # Ansible's linear: a new worker for each task and host, the condition evaluated in it.
    assert len(set(pids(linear))) == 4
    linear_conds = [p for lines in linear["cond_pids"].values() for p in lines]
    assert len(linear_conds) == 2 and not set(linear_conds) & set(pids(linear))
    # This strategy: all in the controller (one process); the false condition was evaluated
    # there once per host, and no worker evaluated it again.
    assert len(pids(ours)) == 4 and len(set(pids(ours))) == 1
    assert ours["cond_pids"] == {"alpha": pids(ours)[:1], "beta": pids(ours)[:1]}
    # With the actions left to workers (a fleet with CPUs to spare), each runs in its own
    # worker again; a false condition is still decided in the controller.
    workers = runs["workers"]
    assert len(set(pids(workers))) == 4
    assert {p for lines in workers["cond_pids"].values() for p in lines} - set(pids(workers))
    assert all(len(lines) == 1 for lines in workers["cond_pids"].values())
    # An include: Ansible's linear templates its file name in a worker, this strategy in the
    # controller.
    assert {p for lines in ours["include_pids"].values() for p in lines} == set(pids(ours))
    assert {p for lines in linear["include_pids"].values() for p in lines} - set(pids(linear))


def test_molecule_and_ansible_cfg_name_the_same_strategy() -> None:
    """molecule writes its own ansible.cfg; .config/molecule/config.yml sets the strategy
    through the environment and must not drift from the project's ansible.cfg."""
    import yaml

    config = yaml.safe_load((PROJECT / ".config" / "molecule" / "config.yml").read_text(encoding="utf-8"))
    assert config["provisioner"]["env"]["ANSIBLE_STRATEGY"] == project_setting("strategy") == "cosyvoice.deploy.linear"


def _strategy_module() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("cv_strategy_linear", PROJECT / "plugins" / "strategy" / "linear.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("hosts", "cpus", "setting", "here"),
    [
        (1, 16, "auto", True),    # one host: its worker would be waited for anyway
        (2, 16, "auto", True),
        (3, 16, "auto", False),   # a fleet with CPUs to spare: workers spread the work
        (50, 16, "auto", False),
        (8, 2, "auto", True),     # no idle CPU for workers (this CI machine: measured faster)
        (8, 1, "auto", True),
        (50, 16, "controller", True),
        (1, 1, "worker", False),
    ],
)
def test_where_controller_only_actions_run(hosts: int, cpus: int, setting: str, here: bool) -> None:
    assert _strategy_module().actions_here(hosts, cpus, setting) is here


def test_a_wrong_actions_setting_fails_the_run_with_the_values_it_takes(tmp_path: Path) -> None:
    env = isolated_ansible_env(tmp_path, ANSIBLE_STRATEGY="cosyvoice.deploy.linear",
                               COSYVOICE_STRATEGY_ACTIONS="sometimes", ANSIBLE_DEPRECATION_WARNINGS="false")
    (tmp_path / "play.yml").write_text("- hosts: localhost\n  gather_facts: false\n  tasks: []\n", encoding="utf-8")
    proc = subprocess.run([str(PLAYBOOK_BIN), "-i", "localhost,", "play.yml"], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=120, check=False)
    assert proc.returncode != 0
    assert "COSYVOICE_STRATEGY_ACTIONS='sometimes': use auto, controller or worker" in proc.stdout + proc.stderr


def test_without_ansible_cores_internal_task_classes_every_task_goes_to_a_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """Another ansible-core whose internals differ: the import fails and the strategy is linear."""
    monkeypatch.setitem(sys.modules, "ansible._internal._task", None)  # import -> ImportError
    module = _strategy_module()
    assert module.TaskContext is None
    queued = []
    monkeypatch.setattr(module.LinearStrategyModule, "_queue_task", lambda self, *args: queued.append(args))
    strategy = module.StrategyModule.__new__(module.StrategyModule)

    class FalseSetFact:  # would be skipped, or run in the controller, with the internals present
        when = ["false"]
        loop_with = loop = delegate_to = async_val = timeout = until = retries = run_once = None
        _resolved_action = action = "ansible.builtin.set_fact"

    task = FalseSetFact()
    strategy._queue_task("host", task, {}, "play_context")
    assert queued == [("host", task, {}, "play_context")]
