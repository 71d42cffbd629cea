"""Test helpers. Importing this package sets up the one way tests import project code:

* plugins and module_utils by their collection path, as Ansible loads them:
  ``from ansible_collections.cosyvoice.deploy.plugins.filter import diagnosis``
  (collections/ansible_collections/cosyvoice/deploy links to the project root);
* the launcher and the watchdog that the cosyvoice role copies to hosts.

tests/conftest.py imports it for pytest's unit tests; molecule's testinfra tests
import ``tests.lib.*`` after putting the project root on sys.path.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for _path in (
    ROOT / "collections",
    ROOT / "roles" / "cosyvoice" / "files" / "launcher",
    ROOT / "roles" / "cosyvoice" / "files" / "watchdog",
):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))
