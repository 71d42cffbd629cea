#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cosyvoice-deploy maintainers
# Apache License 2.0
"""Documentation of the action plugin cosyvoice.deploy.controller_files (it runs on the controller only)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: controller_files
short_description: Write text files on the controller without a module run
description:
  - Writes each file of O(files) on the Ansible controller, in the process that runs the task - no module is
    sent anywhere and no Python is started (a M(ansible.builtin.copy) delegated to localhost is a module
    run of its own, about half a second on a small machine).
  - A file whose content is already the text is not touched; a new content replaces the old file
    atomically; missing directories are made. Files are written C(0644) as the controller's user.
  - Used by the C(cosyvoice.deploy.verify) role for its report and the certificate it verifies TLS against.
version_added: "1.11.0"
author:
  - cosyvoice-deploy maintainers
options:
  files:
    description: Path on the controller (relative - to the playbook's directory) -> text to write there.
    type: dict
    required: true
attributes:
  action:
    support: full
  check_mode:
    support: full
    details: In check mode nothing is written (set C(check_mode=false) on the task to write anyway).
  diff_mode:
    support: none
  delegation:
    support: none
    details: Always the controller, whatever the task is delegated to.
"""

EXAMPLES = r"""
- name: Write the run's report next to the others
  cosyvoice.deploy.controller_files:
    files:
      /srv/reports/gpu1/report.txt: "{{ report_text }}"
  check_mode: false
"""

RETURN = r"""
written:
  description: The paths whose content changed (created or replaced).
  returned: success
  type: list
  elements: str
"""

if __name__ == "__main__":
    raise SystemExit("controller_files is an action plugin: it runs on the controller, not as a module")
