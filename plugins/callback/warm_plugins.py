# -*- coding: utf-8 -*-
# Copyright: cosyvoice-deploy maintainers
# Apache License 2.0
"""Callback plugin: load Jinja and action plugins once, before the workers fork."""

from __future__ import annotations

DOCUMENTATION = r"""
name: warm_plugins
type: aggregate
author: cosyvoice-deploy maintainers
version_added: "1.6.0"
short_description: Load filter, test, lookup and action plugins once in the controller, before workers fork
description:
  - Ansible runs every task of every host in a new worker process forked from the
    controller's main process. Whatever a worker imports is lost when it exits, so
    each task re-imports the filter and test plugins its templates name (all of
    C(ansible.builtin)'s and the playbook-adjacent C(filter_plugins/) on the first
    lookup, every file of a collection's C(plugins/filter) on a collection lookup)
    and the C(module_utils) they use. On a converged host that import work was
    about a fifth of a no-op C(site.yml) run's controller time.
  - At the start of the playbook (in the main process) this callback loads those
    plugins once; the workers forked afterwards inherit them (C(sys.modules) and
    the loaders' caches) and only look them up.
  - Then (1.15.0, option O(freeze)) it takes every object that exists at that point - the
    parsed playbooks and roles, the loaded plugins - out of the garbage collector's walks
    (C(gc.collect), then C(gc.freeze)). A worker forked for a task inherits those objects;
    each collection there walked all of them, and walking writes to them, so the worker copied
    the memory pages that hold them (copy-on-write) and the controller paid the walks too. A
    no-op C(site.yml) on a converged host took ~5% less (proxy exposure, docker connection,
    5 runs each, 9.6 -> 9.2 s); a bare facts + ping play did not change (1.73 s both).
    Objects made later are collected as usual; a frozen one that becomes cyclic garbage is not
    freed before the run ends (a one-off run's parse, not a growing amount).
  - Nothing about results or output changes; a plugin that fails to load here is
    skipped quietly and loaded (and reported) by the task that uses it, as before.
  - Enable it in C(ansible.cfg) with C(callbacks_enabled = cosyvoice.deploy.warm_plugins).
options:
  collections:
    description:
      - Collections whose filter, test, lookup and action plugins are loaded up front.
      - Only collections whose plugins the playbooks' templates use often are worth it.
    type: list
    elements: str
    default: [cosyvoice.deploy]
    ini:
      - section: callback_warm_plugins
        key: collections
    env:
      - name: COSYVOICE_WARM_PLUGINS_COLLECTIONS
  freeze:
    description:
      - After loading, move the controller's objects out of the garbage collector's walks
        (C(gc.freeze)), so that the forked workers do not walk and copy them.
    type: bool
    default: true
    version_added: "1.15.0"
    ini:
      - section: callback_warm_plugins
        key: freeze
    env:
      - name: COSYVOICE_WARM_PLUGINS_FREEZE
"""

import gc
import importlib
import pkgutil

from ansible.plugins.callback import CallbackBase
from ansible.plugins.loader import action_loader, filter_loader, lookup_loader, test_loader
from ansible.utils.display import Display

display = Display()

# (plugin type folder, loader); filters and tests hold many plugins per file.
_JINJA_LOADERS = (("filter", filter_loader), ("test", test_loader))
_CLASS_LOADERS = (("lookup", lookup_loader), ("action", action_loader))


def _plugin_files(collection: str, kind: str) -> list[str]:
    """Module names (no package) of a collection's plugins of one kind; [] when it has none."""
    try:
        pkg = importlib.import_module(f"ansible_collections.{collection}.plugins.{kind}")
    except ImportError:
        return []
    return sorted(name for _finder, name, ispkg in pkgutil.iter_modules(pkg.__path__) if not ispkg and not name.startswith("_"))


def warm(collections: list[str]) -> int:
    """Load the plugins; return how many plugin files they came from. Never raises."""
    files: set[str] = set()
    for kind, loader in _JINJA_LOADERS:
        try:
            # builtin + adjacent (legacy) plugins: fills the loader's cache of non-collection wrappers
            files.update(loader.all(path_only=True))
        except Exception as ex:  # pylint: disable=broad-exception-caught
            display.vvvv(f"warm_plugins: {kind} plugins not preloaded: {ex}")
    for collection in collections:
        for kind, loader in _JINJA_LOADERS:
            names = _plugin_files(collection, kind)
            if not names:
                continue
            try:
                # one collection lookup loads every file of its plugins/<kind> folder
                loader.get(f"{collection}.{names[0]}")
            except Exception as ex:  # pylint: disable=broad-exception-caught
                display.vvvv(f"warm_plugins: {collection} {kind} plugins not preloaded: {ex}")
            files.update(f"{collection}.{kind}.{name}" for name in names)
        for kind, loader in _CLASS_LOADERS:
            for name in _plugin_files(collection, kind):
                try:
                    loader.get(f"{collection}.{name}", class_only=True)
                except Exception as ex:  # pylint: disable=broad-exception-caught
                    display.vvvv(f"warm_plugins: {collection}.{name} ({kind}) not preloaded: {ex}")
                files.add(f"{collection}.{kind}.{name}")
    return len(files)


class CallbackModule(CallbackBase):
    """Preload plugins in the main process so that forked workers inherit them."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "cosyvoice.deploy.warm_plugins"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._warmed = False

    def v2_playbook_on_start(self, playbook):
        if self._warmed:
            return
        self._warmed = True
        count = warm(list(self.get_option("collections") or []))
        display.vvv(f"warm_plugins: {count} plugin files loaded before the workers fork")
        if self.get_option("freeze"):
            gc.collect()
            gc.freeze()
            display.vvv(f"warm_plugins: {gc.get_freeze_count()} objects frozen before the workers fork")
