# -*- coding: utf-8 -*-
# Copyright: cosyvoice-deploy maintainers
# Apache License 2.0
"""Strategy plugin: Ansible's linear strategy, with false conditions decided in the controller."""

from __future__ import annotations

DOCUMENTATION = r"""
name: linear
author: cosyvoice-deploy maintainers
version_added: "1.16.0"
short_description: The linear strategy; a task whose C(when) is false is skipped without forking a worker
description:
  - Ansible's C(ansible.builtin.linear) strategy, unchanged but for one step. Ansible forks a
    worker process for every task on every host, even for a task whose C(when) is false: the
    worker works out the connection settings, evaluates the condition and sends back a
    I(skipped) result. On a converged host most of this project's skipped tasks are repairs
    that the first read found unneeded; each cost a fork (~0.02 s of controller time, per host).
  - This strategy evaluates the condition in the controller first, with the same variables
    the worker would have (the task's variables plus the connection's, as the worker adds
    them), and when it is false it sends the same I(skipped) result through the same queue
    (registered variable, callbacks, C(no_log) as the worker would): no worker is forked.
  - Everything else goes to a worker as before - a true or failing condition (the worker
    evaluates it again and reports it as it always did), and every task with a loop (its
    condition is per item), C(delegate_to), C(async) or a C(timeout).
  - Set it with C(strategy = cosyvoice.deploy.linear) in C(ansible.cfg) (this project does),
    C(ANSIBLE_STRATEGY) or a play's C(strategy:). Plays that name another strategy keep it.
notes:
  - Relies on ansible-core's internal task-result classes (2.19 and later); with an
    ansible-core whose internals differ it forks a worker for every task, as C(linear) does.
"""

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


def forked_always(task) -> bool:
    """Tasks that go to a worker whatever their action and condition: a loop (the condition
    is per item), another host (delegate_to), async, a timeout, retries, run_once."""
    return (
        task.loop_with is not None
        or task.loop is not None
        or bool(task.delegate_to)
        or bool(task.async_val)
        or bool(task.timeout)
        or task.until is not None and bool(task.until)
        or task.retries is not None
        or bool(task.run_once)
    )


class StrategyModule(LinearStrategyModule):
    """linear; false conditions and controller-only actions handled without a worker."""

    def _queue_task(self, host, task, task_vars, play_context):
        if TaskContext is None or forked_always(task):
            super()._queue_task(host, task, task_vars, play_context)
        elif task.resolved_action in IN_CONTROLLER:
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
        self._queued(host, task, task_vars, play_context)
        mine = task.copy(exclude_tasks=True)  # the executor finalises the task's fields
        mine.squash()
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
