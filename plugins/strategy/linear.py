# -*- coding: utf-8 -*-
# Copyright: cosyvoice-deploy maintainers
# Apache License 2.0
"""Strategy plugin: Ansible's linear strategy, without a forked worker where the controller does all the work."""

from __future__ import annotations

DOCUMENTATION = r"""
name: linear
author: cosyvoice-deploy maintainers
version_added: "1.16.0"
short_description: The linear strategy, without a forked worker where the controller does all the work
description:
  - Ansible's C(ansible.builtin.linear) strategy (tasks in lockstep over the hosts), unchanged
    but for where some tasks run. Ansible forks a worker process for every task on every
    host, even when the worker only finds the task's C(when) false, or runs an action that
    never touches the host (C(set_fact), C(assert)). Each fork costs the controller ~0.02 s
    per task and host; on a converged host most of this project's tasks are such.
  - A task whose C(when) is false is skipped in the controller's process. The condition is
    evaluated with the variables the worker would have (the task's, plus the connection
    variables the worker adds), and the same I(skipped) result (registered variable,
    callbacks, C(no_log)) goes through the same result queue. A condition that is true or
    fails to evaluate goes to a worker, which evaluates it again and reports as always (so a
    condition with a side effect, such as a C(pipe) lookup, runs twice for a task that runs).
  - The actions C(set_fact), C(assert), C(fail), C(debug), C(validate_argument_spec),
    C(include_vars), C(include_tasks) and C(include_role) of C(ansible.builtin) run in the
    controller's process, through Ansible's own task executor, on a copy of the task (as a
    worker would - the copy gets the final field values, not the task other hosts share),
    when the play's batch has one or two hosts or the controller one or two usable CPUs.
    Otherwise they go to workers as with C(linear) - a fleet on a controller with CPUs to
    spare, where workers spread that work over the CPUs and the main process (which prepares
    every task for every host, one at a time) stays free. The rule comes from costs measured
    on a 2-CPU machine (main process ~21 ms per action run there, ~9 ms per forked worker);
    it is not measured on a larger controller. The environment variable
    E(COSYVOICE_STRATEGY_ACTIONS) sets it - V(auto) (the rule), V(controller) or V(worker);
    another value fails the run.
  - Every task with a loop (its condition is per item), C(delegate_to), C(async), a
    C(timeout), C(until)/C(retries) or C(run_once) goes to a worker, whatever its action.
  - Results, output, registered variables, facts, handlers, failures and rescues are those
    of C(ansible.builtin.linear) (tests/unit/test_strategy_linear.py compares them). One
    visible difference, for callbacks that look at the strategy's name - C(ansible.posix.json)
    lists each task once per host, as under the C(free) strategy.
  - Set it with C(strategy = cosyvoice.deploy.linear) in C(ansible.cfg) (this project does),
    C(ANSIBLE_STRATEGY) or a play's C(strategy:); C(ANSIBLE_STRATEGY=linear) switches back.
notes:
  - ansible-core prints a deprecation warning for every strategy outside C(ansible.builtin) -
    it does not promise to keep third-party strategies working. This one relies on
    ansible-core's internal task classes (2.19 and later; tested with the 2.21 that
    C(requirements.txt) pins); without them it forks a worker for every task, as C(linear).
"""

import os

from ansible.errors import AnsibleError
from ansible.executor.task_executor import TaskExecutor
from ansible.plugins import loader as plugin_loader
from ansible.plugins.strategy.linear import StrategyModule as LinearStrategyModule
from ansible.utils.display import Display

try:  # ansible-core's internal task-result classes (2.19+); without them every task is forked.
    from ansible._internal._display_utils import DeferredWarningContext
    from ansible._internal._task import TaskContext, UnifiedTaskResult
except ImportError:  # pragma: no cover - other ansible-core internals
    TaskContext = UnifiedTaskResult = DeferredWarningContext = None

display = Display()

# Actions that do all their work in the controller, never on the host, and keep no state:
# run in the controller's process, as a worker would run them.
IN_CONTROLLER = frozenset(
    f"ansible.builtin.{name}"
    for name in ("set_fact", "assert", "fail", "debug", "validate_argument_spec", "include_vars",
                 "include_tasks", "include_role")
)


def usable_cpus() -> int:
    """CPUs this process may run on (a container's or cgroup's share, where the OS says)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def actions_here(hosts: int, cpus: int, setting: str = "auto") -> bool:
    """Whether controller-only actions run in the controller's process for a batch of `hosts`.

    Measured here (py-spy, 8-host no-op): an action run in the main process costs it ~21 ms,
    a forked worker ~9 ms (the rest of the work then runs in the worker, on another CPU).
    With one or two hosts the worker's work is waited for anyway, and with one or two CPUs
    there is no idle CPU for workers: the main process is cheaper. With more hosts and
    CPUs, workers spread the work over the CPUs and keep the main process - which prepares
    every task for every host, one at a time - free. `setting`: auto | controller | worker.
    """
    if setting in ("controller", "worker"):
        return setting == "controller"
    return hosts <= 2 or cpus <= 2


def forked_always(task) -> bool:
    """Tasks that go to a worker whatever their action and condition: a loop (the condition
    is per item), another host (delegate_to), async, a timeout, retries, run_once."""
    return (
        task.loop_with is not None
        or task.loop is not None
        or bool(task.delegate_to)
        or bool(task.async_val)
        or bool(task.timeout)
        or bool(task.until)
        or task.retries is not None
        or bool(task.run_once)
    )


class StrategyModule(LinearStrategyModule):
    """linear; false conditions and controller-only actions handled without a worker."""

    def __init__(self, tqm):
        super().__init__(tqm)
        self._actions_setting = os.environ.get("COSYVOICE_STRATEGY_ACTIONS", "auto")
        if self._actions_setting not in ("auto", "controller", "worker"):
            raise AnsibleError(f"COSYVOICE_STRATEGY_ACTIONS={self._actions_setting!r}: use auto, controller or worker")
        self._cpus = usable_cpus()

    def _queue_task(self, host, task, task_vars, play_context):
        if TaskContext is None or forked_always(task):
            super()._queue_task(host, task, task_vars, play_context)
        elif ((task._resolved_action or task.action) in IN_CONTROLLER  # as written when not resolved yet
              and actions_here(len(self._hosts_cache), self._cpus, self._actions_setting)):
            self._run_here(host, task, task_vars, play_context)
        elif not task.when or not self._skipped_here(host, task, task_vars, play_context):
            super()._queue_task(host, task, task_vars, play_context)

    def _queued(self, host, task, task_vars, play_context) -> None:
        """What _queue_task records for a task sent to a worker."""
        self._queued_task_cache[(host.name, task._uuid)] = {
            'host': host,
            'task': task,
            'task_vars': task_vars,
            'play_context': play_context,
        }
        self._tqm.send_callback('v2_runner_on_start', host, task)

    def _run_here(self, host, task, task_vars, play_context) -> None:
        """Run the task as WorkerProcess does, in this process, on a copy of the task."""
        mine = task.copy(exclude_tasks=True)  # the executor finalises the task's fields
        mine.squash()
        self._queued(host, task, task_vars, play_context)
        with TaskContext.create(task=mine, task_vars=task_vars, host_name=host.name):
            executor = TaskExecutor(host, play_context, self._loader, plugin_loader.get_plugin_loader_namespace(),
                                    self._final_q, self._variable_manager)
            utr = executor.run()
            utr.finalize_registered_values()
        mine.ignore_errors = utr.ignore_errors
        mine.ignore_unreachable = utr.ignore_unreachable
        self._final_q.send_task_result(host, mine, utr)
        self._pending_results += 1

    def _skipped_here(self, host, task, task_vars, play_context) -> bool:
        """Send a false condition's skipped result, as a worker would; False when a worker must run."""
        variables = task_vars.copy()
        with TaskContext.create(task=task, task_vars=variables, host_name=host.name):
            task_ctx = TaskContext.current()
            templar = task_ctx.task_templar
            with DeferredWarningContext(variables=variables) as warnings:
                try:
                    # What the worker does before it evaluates the condition (TaskExecutor).
                    context = play_context.set_task_and_variable_override(task=task, variables=variables, templar=templar)
                    context.post_validate(templar=templar)
                    if not context.remote_addr:
                        context.remote_addr = host.address
                    magic = variables.copy()
                    context.update_vars(magic)
                    result, condition = task._resolve_conditional_with_item(task.when, magic)
                except Exception:  # pylint: disable=broad-except - the worker evaluates it again and reports it
                    return False
                if result:
                    return False
                utr = UnifiedTaskResult.record_conditional_false(condition)
                task.update_result_no_log(templar, utr)
            utr.finalize_warnings(warnings)
            utr.finalize_registered_values()
        display.debug(f"condition false in the controller: {host.name}/{task.action} skipped without a worker")
        self._queued(host, task, task_vars, play_context)
        self._final_q.send_task_result(host, task, utr)
        self._pending_results += 1
        return True
