#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cosyvoice-deploy maintainers
# Apache License 2.0
"""Which of some packages are not installed (dpkg or rpm), and optionally the state of some units, users,
groups and paths, a git checkout, a self-signed key and certificate, and an htpasswd file: a role's first read
of the host, in one run (read-only, fast)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: package_state
short_description: Tell which of the given packages are not installed (dpkg or rpm), without the package manager
description:
  - Reads the installed state of O(names) from C(dpkg-query) (Debian, Ubuntu) or C(rpm -q) (RHEL family) in one
    command, without opening the package manager's cache, so that a role runs M(ansible.builtin.apt) or
    M(ansible.builtin.package) only for what is missing (on a converged host, not at all).
  - A name that is not an installed package (not installed, half-installed, removed with its configuration
    kept, or a virtual package name) is reported missing; the package manager then decides.
  - With O(services), O(users) and O(groups) the same run also reads what a role would otherwise ask
    M(ansible.builtin.service), M(ansible.builtin.user) and M(ansible.builtin.group) for, so that those
    modules run only when the host is not already as wanted (one C(systemctl show) for all units; the
    account databases through the C(pwd), C(grp) and shadow files).
  - With O(stat), O(checkout), O(tls_selfsigned) and O(htpasswd) it also reads what the role's later tasks
    would otherwise read in module runs of their own (1.13.0, 1.14.0), with the same readers as the modules
    named there (C(module_utils)); each answers null or false where it cannot read yet (a tool or library
    the role installs later in the run), and the role then runs that module.
  - Never returns a password hash (see RV(users)), a password, key material, or a plain digest of a secret
    file (O(stat.secret_paths)).
  - Read-only; check mode runs it too.
version_added: "1.5.0"
options:
  names:
    description: Package names (no versions).
    type: list
    elements: str
    required: true
  services:
    description: systemd units whose active and unit-file state to read (RV(services)).
    type: list
    elements: str
    default: []
    version_added: "1.11.0"
  users:
    description: User accounts to read (RV(users)).
    type: list
    elements: str
    default: []
    version_added: "1.11.0"
  groups:
    description: Groups to read (RV(groups)).
    type: list
    elements: str
    default: []
    version_added: "1.11.0"
  files:
    description:
      - Also list the entries under O(files.paths) whose name matches one of O(files.patterns) (RV(files)), as
        M(ansible.builtin.find) with C(file_type=any) would (hidden names are not listed), so that a role's first read also
        finds its unit files and drop-ins. Omit it to list nothing.
    type: dict
    version_added: "1.12.0"
    suboptions:
      paths:
        description: Directories to look in; one that does not exist lists nothing.
        type: list
        elements: path
        required: true
      patterns:
        description: Shell patterns (C(fnmatch)) matched against each entry's name.
        type: list
        elements: str
        required: true
      depth:
        description: Levels to look into, as M(ansible.builtin.find)'s O(ansible.builtin.find#module:depth) (1 - only the entries of each path).
        type: int
        default: 1
  stat:
    description:
      - Also read what is at each of O(stat.paths), and everything below each of O(stat.trees) (RV(stat)), so that
        the role's later M(cosyvoice.deploy.host_files) and M(cosyvoice.deploy.file_tree) tasks, given this read as
        their O(cosyvoice.deploy.host_files#module:known), need no module run for paths already as wanted.
    type: dict
    version_added: "1.13.0"
    suboptions:
      paths:
        description: Paths to read (links not followed).
        type: list
        elements: path
        default: []
      trees:
        description: Directories to read with all they hold (C(__pycache__) not entered).
        type: list
        elements: path
        default: []
      types:
        description:
          - Paths whose type alone is read (C(absent), C(directory), C(file), C(link), C(other)) - no owner, mode or
            digest; for large files whose presence is all that is checked, such as a model's weights.
        type: list
        elements: path
        default: []
        version_added: "1.14.0"
      secret_paths:
        description:
          - Paths of files that hold secrets (a login file with passwords), read as O(stat.paths) but with
            C(hmac), the HMAC-SHA-256 of the content under O(stat.key), instead of C(sha256), so that the result
            holds no unsalted hash of a password and only who holds the key (the role, for this run) can compare it.
          - Ignored without O(stat.key).
        type: list
        elements: path
        default: []
        version_added: "1.14.0"
      key:
        description:
          - The key of the HMACs of O(stat.secret_paths), a random one per run, never logged (C(no_log)). Give the same
            one to M(cosyvoice.deploy.host_files) as O(cosyvoice.deploy.host_files#module:known_key).
        type: str
        version_added: "1.14.0"
  checkout:
    description:
      - Also read a git checkout as M(cosyvoice.deploy.git_checkout_state) does, with its options (RV(checkout)) -
        the cosyvoice role's first read, so that a converged host needs no module run of its own for it. Without
        git on the host (not installed yet) RV(checkout) is null and the role reads it after installing git.
      - The task's C(environment) (e.g. C(GIT_CONFIG_*) for C(insteadOf) rules) applies as it does to that module.
    type: dict
    version_added: "1.14.0"
    suboptions:
      repo:
        description: The repository URL as configured (before C(insteadOf)).
        type: str
        required: true
      dest:
        description: The checkout's directory.
        type: path
        required: true
      version:
        description: The pinned version (a full commit id).
        type: str
        required: true
      env:
        description: The environment built from the checkout, as M(cosyvoice.deploy.git_checkout_state)'s O(cosyvoice.deploy.git_checkout_state#module:env).
        type: dict
        suboptions:
          requirements:
            description: The requirements file (in the checkout).
            type: path
            required: true
          requirements_required:
            description: Fail when it cannot be read (in a current checkout).
            type: bool
            default: true
          stamp:
            description: The fingerprint file the last install wrote.
            type: path
            required: true
          uv:
            description: The C(uv) binary to ask for its version; empty asks nothing.
            type: path
            default: ""
          venv:
            description: The venv directory.
            type: path
            required: true
  tls_selfsigned:
    description:
      - Also read a private key and its self-signed certificate as M(cosyvoice.deploy.tls_selfsigned_state) does,
        with its options (RV(tls_selfsigned)) - the nginx_proxy role's first read, so that a converged host needs
        no second module run for them. Without python3-cryptography on the host (not installed yet) RV(tls_selfsigned)
        is null and the role reads them after installing it.
    type: dict
    version_added: "1.14.0"
    suboptions:
      key_path:
        description: The private key (PEM).
        type: path
        required: true
      cert_path:
        description: The certificate (PEM).
        type: path
        required: true
      key_type:
        description: The wanted key type.
        type: str
        choices: [ECC, RSA]
        default: ECC
      key_size:
        description: The wanted RSA key size in bits.
        type: int
        default: 3072
      curve:
        description: The wanted ECC curve.
        type: str
        default: secp256r1
      renew_days:
        description: Days before expiry when the certificate is due for renewal.
        type: int
        default: 30
  htpasswd:
    description:
      - Also tell whether the htpasswd file already holds exactly these users, every password matching its hash,
        with this owner, group and mode - what M(cosyvoice.deploy.htpasswd_users) with the same options would leave
        as it is (RV(htpasswd_settled)). Passwords are never returned; they are C(no_log).
    type: dict
    version_added: "1.14.0"
    suboptions:
      path:
        description: The htpasswd file.
        type: path
        required: true
      users:
        description: The users, C(name) and C(password).
        type: list
        elements: dict
        required: true
        suboptions:
          name:
            description: The user name.
            type: str
            required: true
          password:
            description: The password.
            type: str
            required: true
      hash_scheme:
        description: The scheme of new hashes.
        type: str
        choices: [apr_md5_crypt, sha256_crypt, sha512_crypt, bcrypt]
        default: apr_md5_crypt
      owner:
        description: The file's owner.
        type: str
        default: root
      group:
        description: The file's group.
        type: str
        default: root
      mode:
        description: The file's mode (octal text).
        type: str
        default: "0640"
extends_documentation_fragment:
  - cosyvoice.deploy.read_only
"""

EXAMPLES = r"""
- name: Find the packages that are missing
  cosyvoice.deploy.package_state:
    names: [nginx, python3-passlib]
  register: nginx_packages

- name: Install what is missing
  ansible.builtin.apt:
    name: "{{ nginx_packages.missing }}"
  when: nginx_packages.missing | length > 0

- name: Read the packages, the unit and the account a role manages, in one run
  cosyvoice.deploy.package_state:
    names: [nginx]
    services: [nginx.service]
    users: [www-data]
    groups: [www-data]
  register: host_state

- name: Start nginx only when it is not running and enabled already
  ansible.builtin.service:
    name: nginx
    state: started
    enabled: true
  when: >-
    host_state.services['nginx.service'] != {'active': 'active', 'enabled': 'enabled'}
"""

RETURN = r"""
missing:
  description: The names of O(names) that are not installed, in the order given.
  returned: always
  type: list
  elements: str
  sample: [python3-passlib]
tool:
  description: What was asked (dpkg-query or rpm); none when neither exists (every name is then missing).
  returned: always
  type: str
services:
  description:
    - For each of O(services), C(active) (the unit's ActiveState, e.g. active, inactive, failed) and
      C(enabled) (its UnitFileState, e.g. enabled, disabled, masked, static; C(not-found) for a unit
      systemd does not know). Both C(unknown) without systemctl.
  returned: always
  type: dict
  sample: {nginx.service: {active: active, enabled: enabled}}
users:
  description:
    - For each of O(users), null when the account does not exist, else its C(uid), C(group) (the primary
      group's name), C(home), C(shell) and C(comment), and C(password) - the shadow password field only
      when it holds no hash (C(""), C(!), C(*), C(!!), C(!*)), C(hashed) when it holds one, null when the
      shadow file cannot be read.
  returned: always
  type: dict
  sample: {cosyvoice: {uid: 998, group: cosyvoice, home: /var/lib/cosyvoice, shell: /usr/sbin/nologin,
           comment: CosyVoice3 TTS service, password: "!"}}
groups:
  description: For each of O(groups), null when the group does not exist, else its C(gid).
  returned: always
  type: dict
  sample: {cosyvoice: {gid: 998}}
files:
  description:
    - Only with O(files). The matching entries, sorted by path - C(path), and C(isreg) (a regular file, not a
      link, a directory or anything else; links are not followed), the two fields of M(ansible.builtin.find)'s
      RV(ansible.builtin.find#module:files) that a role reads.
  returned: when O(files) is given
  type: list
  elements: dict
  sample: [{path: /etc/systemd/system/cosyvoice.service, isreg: true},
           {path: /etc/systemd/system/cosyvoice.service.d/override.conf, isreg: true}]
stat:
  description:
    - Only with O(stat). For each path of O(stat.paths) and O(stat.trees) - C(type) (C(absent), C(directory), C(file),
      C(link) or C(other)), and for a directory or a file C(mode) (octal text), C(uid), C(owner), C(gid), C(group),
      for a file its C(sha256), for a link its C(target); a tree's root also C(tree), the same for every path below
      it, by relative path.
    - For each of O(stat.types) only C(type); for each of O(stat.secret_paths) (with O(stat.key)) C(hmac) instead
      of C(sha256).
  returned: when O(stat) is given
  type: dict
  sample: {/opt/cosyvoice: {type: directory, mode: "0755", uid: 0, owner: root, gid: 0, group: root},
           /etc/cosyvoice/auth.json: {type: absent}}
tls_selfsigned:
  description:
    - Only with O(tls_selfsigned) - C(key) and C(certificate) as M(cosyvoice.deploy.tls_selfsigned_state) returns
      them; null when python3-cryptography is not on the host.
  returned: when O(tls_selfsigned) is given
  type: dict
  version_added: "1.14.0"
htpasswd_settled:
  description: Only with O(htpasswd) - whether the file is already as asked (false without python3-passlib).
  returned: when O(htpasswd) is given
  type: bool
  version_added: "1.14.0"
checkout:
  description:
    - Only with O(checkout) - C(repo), C(current), C(head), C(why) and C(env) as
      M(cosyvoice.deploy.git_checkout_state) returns them; null when git is not on the host.
  returned: when O(checkout) is given
  type: dict
  version_added: "1.14.0"
"""

from ansible.module_utils.basic import AnsibleModule
# The reader lives in module_utils (host_read runs it too); the names are imported here for main() and the tests.
from ansible_collections.cosyvoice.deploy.plugins.module_utils.package_read import (  # noqa: F401
    NO_HASH, PACKAGE_STATE_SPEC, SHADOW, find_files, group_state, read_packages, read_shadow, shadow_fields,
    unit_states, user_state)


def main() -> None:
    module = AnsibleModule(argument_spec=PACKAGE_STATE_SPEC, supports_check_mode=True)
    # read_shadow as this module names it (the tests replace it here).
    module.exit_json(changed=False, **read_packages(module, module.params, shadow_reader=read_shadow))


if __name__ == "__main__":
    main()
