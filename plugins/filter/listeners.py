"""Filters over `ss` output and /proc/<pid>/cgroup, for playbooks that read them themselves.

The parsing lives in plugins/module_utils/listeners.py (the host_probe module
runs it on the host and returns parsed listeners; the verify role uses that).
These filters expose the same functions to Jinja:

    {{ ss_result.stdout | cosyvoice.deploy.ss_listeners }}                  -> list of listeners
    {{ listeners | cosyvoice.deploy.listeners_on_port(7860) }}              -> the ones on port 7860
    {{ listeners | cosyvoice.deploy.listener_reach(7860, '203.0.113.7') }}  -> who can connect (summary)
    {{ listeners | cosyvoice.deploy.listener_pids([7860]) }}                -> pids holding port 7860
    {{ grep_result.stdout | cosyvoice.deploy.proc_cgroup_units }}           -> {"1234": "cosyvoice.service"}
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from ansible_collections.cosyvoice.deploy.plugins.module_utils import listeners as _ls

try:  # an Ansible error shows as a clean task failure; plain ValueError outside Ansible
    from ansible.errors import AnsibleFilterError
except ImportError:  # pragma: no cover
    AnsibleFilterError = ValueError  # type: ignore[misc,assignment]


def _as_filter_error(func: Callable[..., Any]) -> Callable[..., Any]:
    """Report unparsable input as an AnsibleFilterError (a clean task failure) naming the line."""
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except _ls.ListenerParseError as exc:
            raise AnsibleFilterError(str(exc)) from exc
    return wrapper


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "ss_listeners": _as_filter_error(_ls.ss_listeners),
            "listeners_on_port": _as_filter_error(_ls.listeners_on_port),
            "listener_reach": _as_filter_error(_ls.listener_reach),
            "listener_pids": _as_filter_error(_ls.listener_pids),
            "proc_cgroup_units": _ls.proc_cgroup_units,
        }
