"""cosyvoice.deploy.tls_selfsigned_state: the key and certificate read in one run, judged by the role's filter."""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ansible_collections.cosyvoice.deploy.plugins.filter.nginx_proxy import selfsigned_current
from ansible_collections.cosyvoice.deploy.plugins.module_utils import tls_state as tss

NAMES = ["cv-demo.example.com", "172.17.0.2", "2001:db8::1"]
NOW = datetime.datetime.now(datetime.timezone.utc)


def write_key(path: Path, key, mode: int = 0o600) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(mode)


def issue(path: Path, key, names=NAMES, *, days: int = 825, ca: bool = False, eku=ExtendedKeyUsageOID.SERVER_AUTH,
          common_name: str | None = None, san_critical: bool = False) -> None:
    """A certificate as the role's openssl_csr_pipe + x509_certificate(selfsigned) make it."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name or names[0])])
    sans = [x509.IPAddress(ipaddress.ip_address(n)) if n[0].isdigit() or ":" in n else x509.DNSName(n) for n in names]
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(NOW - datetime.timedelta(minutes=1))
            .not_valid_after(NOW + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(sans), critical=san_critical)
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=False)
            .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
            .sign(key, hashes.SHA256()))
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


@pytest.fixture
def tls(tmp_path: Path):
    key = ec.generate_private_key(ec.SECP256R1())
    write_key(tmp_path / "site.key", key)
    issue(tmp_path / "site.crt", key)
    return tmp_path, key


def read(tmp_path: Path, **kw):
    key = tss.read_key(str(tmp_path / "site.key"), kw.pop("key_type", "ECC"), kw.pop("key_size", 3072),
                       kw.pop("curve", "secp256r1"))
    return key, tss.read_certificate(str(tmp_path / "site.crt"), kw.pop("renew_days", 30))


@pytest.mark.skipif(os.getuid() != 0, reason="the key must be root:root; needs root to be so")
def test_the_role_s_own_key_and_certificate_are_current(tls) -> None:
    tmp_path, _ = tls
    key, cert = read(tmp_path)
    assert key["exists"] and key["current"] and key["why"] == ""
    assert key["fingerprint"]["sha256"] == cert["public_key_fingerprints"]["sha256"]
    assert cert["subject_alt_name"] == ["DNS:cv-demo.example.com", "IP:172.17.0.2", "IP:2001:db8::1"]
    assert cert["basic_constraints"] == ["CA:FALSE"] and cert["extended_key_usage"] == ["TLS Web Server Authentication"]
    assert cert["subject"] == cert["issuer"] == {"commonName": "cv-demo.example.com"}
    assert cert["valid_at"] == {"renew": True}
    assert selfsigned_current(cert, key, NAMES) is True
    assert "PRIVATE" not in repr((key, cert))  # a fingerprint only, never key material


def test_a_key_not_as_wanted_is_not_current(tls, tmp_path: Path) -> None:
    tmp, key = tls
    (tmp / "site.key").chmod(0o644)
    assert read(tmp)[0]["why"] == "not a root:root 0600 file"
    (tmp / "site.key").chmod(0o600)
    assert read(tmp, key_type="RSA")[0]["why"] == "not an RSA key of 3072 bits"
    assert read(tmp, curve="secp384r1")[0]["why"] == "not an ECC key on secp384r1"
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    write_key(tmp / "site.key", rsa_key)
    assert read(tmp, key_type="RSA")[0]["why"] == "not an RSA key of 3072 bits"
    (tmp / "site.key").write_text("garbage\n")
    got = read(tmp)[0]
    assert got["exists"] and not got["current"] and got["why"].startswith("cannot load the key")
    (tmp / "site.key").unlink()
    assert read(tmp)[0] == {"exists": False, "current": False, "why": "no key", "fingerprint": {"sha256": ""}}


@pytest.mark.parametrize("change", ["names", "common_name", "ca", "eku", "san_critical", "renew", "other_key"])
def test_a_certificate_the_role_would_not_issue_is_not_current(tls, change: str) -> None:
    tmp, key = tls
    signer = ec.generate_private_key(ec.SECP256R1()) if change == "other_key" else key
    kwargs = {"names": NAMES[:2]} if change == "names" else {
        "common_name": {"common_name": "other"}, "ca": {"ca": True}, "san_critical": {"san_critical": True},
        "eku": {"eku": ExtendedKeyUsageOID.CLIENT_AUTH}, "renew": {"days": 10}}.get(change, {})
    issue(tmp / "site.crt", signer, **kwargs)
    key_read, cert = read(tmp)
    assert selfsigned_current(cert, key_read, NAMES) is False


def test_a_missing_or_broken_certificate_reads_as_failed(tls) -> None:
    tmp, _ = tls
    (tmp / "site.crt").write_text("not a certificate\n")
    assert read(tmp)[1]["failed"] is True
    (tmp / "site.crt").unlink()
    cert = read(tmp)[1]
    assert cert["failed"] is True and "cannot read" in cert["msg"]
    assert selfsigned_current(cert, read(tmp)[0], NAMES) is False
