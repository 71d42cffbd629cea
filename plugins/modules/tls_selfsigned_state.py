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

import datetime
import hashlib
import os
import stat
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID
except ImportError:  # pragma: no cover - reported by main()
    x509 = None
    CRYPTOGRAPHY_ERROR = traceback.format_exc()
else:
    CRYPTOGRAPHY_ERROR = None

# serverAuth as community.crypto.x509_certificate_info names it (checked against it on a host).
SERVER_AUTH_NAME = "TLS Web Server Authentication"


def fingerprint(public_key) -> str:
    """sha256 of the DER SubjectPublicKeyInfo, colon-separated hex (community.crypto's format)."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    digest = hashlib.sha256(der).hexdigest()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def read_key(path: str, key_type: str, key_size: int, curve: str) -> dict:
    result = {"exists": os.path.lexists(path), "current": False, "why": "", "fingerprint": {"sha256": ""}}
    if not result["exists"]:
        return {**result, "why": "no key"}
    info = os.lstat(path)
    try:
        with open(path, "rb") as handle:
            key = serialization.load_pem_private_key(handle.read(), password=None)
    except (OSError, ValueError, TypeError) as err:
        return {**result, "why": f"cannot load the key without a passphrase: {err}"}
    result["fingerprint"]["sha256"] = fingerprint(key.public_key())
    if key_type == "ECC" and not (isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == curve):
        return {**result, "why": f"not an ECC key on {curve}"}
    if key_type == "RSA" and not (isinstance(key, rsa.RSAPrivateKey) and key.key_size == key_size):
        return {**result, "why": f"not an RSA key of {key_size} bits"}
    if not stat.S_ISREG(info.st_mode) or (info.st_uid, info.st_gid) != (0, 0) or stat.S_IMODE(info.st_mode) != 0o600:
        return {**result, "why": "not a root:root 0600 file"}
    return {**result, "current": True}


def _name(name) -> dict:
    return {getattr(attr.oid, "_name", attr.oid.dotted_string): attr.value for attr in name}


def _not_before_after(cert) -> tuple[datetime.datetime, datetime.datetime]:
    """Validity in UTC (cryptography >= 42 has *_utc; older versions return naive UTC)."""
    if hasattr(cert, "not_valid_before_utc"):
        return cert.not_valid_before_utc, cert.not_valid_after_utc
    return (cert.not_valid_before.replace(tzinfo=datetime.timezone.utc),
            cert.not_valid_after.replace(tzinfo=datetime.timezone.utc))


def read_certificate(path: str, renew_days: int, now: datetime.datetime | None = None) -> dict:
    try:
        with open(path, "rb") as handle:
            cert = x509.load_pem_x509_certificate(handle.read())
    except (OSError, ValueError) as err:
        return {"failed": True, "msg": f"cannot read {path} as a PEM certificate: {err}"}
    info: dict = {"subject": _name(cert.subject), "issuer": _name(cert.issuer), "subject_alt_name": [],
                  "subject_alt_name_critical": False, "basic_constraints": None, "extended_key_usage": None,
                  "public_key_fingerprints": {"sha256": fingerprint(cert.public_key())}}
    for ext in cert.extensions:
        if isinstance(ext.value, x509.SubjectAlternativeName):
            info["subject_alt_name_critical"] = ext.critical
            for general in ext.value:
                if isinstance(general, x509.DNSName):
                    info["subject_alt_name"].append(f"DNS:{general.value}")
                elif isinstance(general, x509.IPAddress):
                    info["subject_alt_name"].append(f"IP:{general.value.compressed}")
                else:
                    info["subject_alt_name"].append(f"other:{general.value}")
        elif isinstance(ext.value, x509.BasicConstraints):
            info["basic_constraints"] = [f"CA:{'TRUE' if ext.value.ca else 'FALSE'}"] + (
                [f"pathlen:{ext.value.path_length}"] if ext.value.path_length is not None else [])
        elif isinstance(ext.value, x509.ExtendedKeyUsage):
            info["extended_key_usage"] = [SERVER_AUTH_NAME if oid == ExtendedKeyUsageOID.SERVER_AUTH else oid.dotted_string
                                          for oid in ext.value]
    not_before, not_after = _not_before_after(cert)
    moment = (now or datetime.datetime.now(datetime.timezone.utc)) + datetime.timedelta(days=renew_days)
    info["valid_at"] = {"renew": not_before <= moment <= not_after}
    return info


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "key_path": {"type": "path", "required": True},
            "cert_path": {"type": "path", "required": True},
            "key_type": {"type": "str", "choices": ["ECC", "RSA"], "default": "ECC"},
            "key_size": {"type": "int", "default": 3072},
            "curve": {"type": "str", "default": "secp256r1"},
            "renew_days": {"type": "int", "default": 30},
        },
        supports_check_mode=True,
    )
    if x509 is None:
        module.fail_json(msg=missing_required_lib("cryptography (python3-cryptography)"), exception=CRYPTOGRAPHY_ERROR)
    params = module.params
    module.exit_json(changed=False,
                     key=read_key(params["key_path"], params["key_type"], params["key_size"], params["curve"]),
                     certificate=read_certificate(params["cert_path"], params["renew_days"]))


if __name__ == "__main__":
    main()
