#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: cosyvoice-deploy maintainers
# Apache License 2.0
"""The self-signed key and certificate on the host, read in one run (read-only)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: tls_selfsigned_state
short_description: Read a private key and its self-signed certificate in one run, as the role judges them
description:
  - Reads the private key at O(key_path) and the certificate at O(cert_path) with python3-cryptography on the
    host, in one module run instead of M(community.crypto.openssl_privatekey) (which also reads the key on a
    host where it is current) and M(community.crypto.x509_certificate_info).
  - RV(key.current) is true when the key exists, is a regular file owned by root:root with mode C(0600), loads
    without a passphrase and is of O(key_type) (O(key_size) bits for RSA, curve O(curve) for ECC) - what
    M(community.crypto.openssl_privatekey) would leave as it is. Otherwise the role runs that module.
  - RV(certificate) has the fields of M(community.crypto.x509_certificate_info) that the role's filter
    C(cosyvoice.deploy.nginx_proxy_selfsigned_current) judges (subject, issuer, subjectAltName, basic
    constraints, extended key usage, public key fingerprint, C(valid_at.renew)), with the same formats.
  - Never returns key material (the public key's fingerprint only).
  - Read-only; check mode runs it too.
version_added: "1.11.0"
options:
  key_path:
    description: The private key (PEM).
    type: path
    required: true
  cert_path:
    description: The certificate (PEM).
    type: path
    required: true
  key_type:
    description: The key type the role makes.
    type: str
    choices: [ECC, RSA]
    default: ECC
  key_size:
    description: Bits of an RSA key.
    type: int
    default: 3072
  curve:
    description: Curve of an ECC key.
    type: str
    default: secp256r1
  renew_days:
    description: RV(certificate.valid_at.renew) is whether the certificate is still valid this many days from now.
    type: int
    default: 30
extends_documentation_fragment:
  - cosyvoice.deploy.read_only
requirements:
  - python3-cryptography on the host
"""

EXAMPLES = r"""
- name: Read the key and the certificate
  cosyvoice.deploy.tls_selfsigned_state:
    key_path: /etc/nginx/ssl/cosyvoice/cosyvoice.key
    cert_path: /etc/nginx/ssl/cosyvoice/cosyvoice.crt
  register: tls
"""

RETURN = r"""
key:
  description: C(exists), C(current) (see the description), C(why) (empty when current) and C(fingerprint.sha256)
    of its public key (colon-separated hex; empty when it cannot be read).
  returned: always
  type: dict
certificate:
  description:
    - When the certificate can be read - C(subject), C(issuer) (attribute name -> value), C(subject_alt_name)
      (C(DNS:name), C(IP:address)), C(subject_alt_name_critical), C(basic_constraints) (C(CA:FALSE),
      C(CA:TRUE), C(pathlen:N)), C(extended_key_usage) (C(TLS Web Server Authentication) or the dotted OID),
      C(public_key_fingerprints.sha256) and C(valid_at.renew).
    - Else C(failed=true) and C(msg) (why), as a failed M(community.crypto.x509_certificate_info) result.
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.cosyvoice.deploy.plugins.module_utils.tls_state import (
    SELFSIGNED_SPEC, cryptography_missing, read_selfsigned)


def main() -> None:
    module = AnsibleModule(argument_spec=SELFSIGNED_SPEC, supports_check_mode=True)
    error = cryptography_missing()
    if error:
        module.fail_json(msg=missing_required_lib("cryptography (python3-cryptography)"), exception=error)
    module.exit_json(changed=False, **read_selfsigned(module.params))


if __name__ == "__main__":
    main()
