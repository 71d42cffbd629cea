# -*- coding: utf-8 -*-
# Copyright: cosyvoice-deploy maintainers
# Apache License 2.0
"""Reading a private key and its self-signed certificate as the nginx_proxy role judges them: shared by
tls_selfsigned_state and by package_state's `tls_selfsigned` (the role's first read). Never key material."""

from __future__ import annotations

import datetime
import hashlib
import os
import stat
import traceback


def cryptography_missing() -> str | None:
    """None when python3-cryptography imports; else the import's traceback. The library is imported only by
    the functions that read (it takes ~0.2 s to import: package_state pays it only when asked for the read)."""
    try:
        import cryptography.x509  # noqa: F401  pylint: disable=unused-import
    except ImportError:
        return traceback.format_exc()
    return None


# The options of the read (tls_selfsigned_state's, package_state's tls_selfsigned suboptions).
SELFSIGNED_SPEC = {
    "key_path": {"type": "path", "required": True},
    "cert_path": {"type": "path", "required": True},
    "key_type": {"type": "str", "choices": ["ECC", "RSA"], "default": "ECC"},
    "key_size": {"type": "int", "default": 3072},
    "curve": {"type": "str", "default": "secp256r1"},
    "renew_days": {"type": "int", "default": 30},
}

# serverAuth as community.crypto.x509_certificate_info names it (checked against it on a host).
SERVER_AUTH_NAME = "TLS Web Server Authentication"


def fingerprint(public_key) -> str:
    """sha256 of the DER SubjectPublicKeyInfo, colon-separated hex (community.crypto's format)."""
    from cryptography.hazmat.primitives import serialization
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    digest = hashlib.sha256(der).hexdigest()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def read_key(path: str, key_type: str, key_size: int, curve: str) -> dict:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

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
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

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


def read_selfsigned(params: dict) -> dict:
    """{key, certificate} as tls_selfsigned_state returns them (params: its options)."""
    return {"key": read_key(params["key_path"], params["key_type"], params["key_size"], params["curve"]),
            "certificate": read_certificate(params["cert_path"], params["renew_days"])}
