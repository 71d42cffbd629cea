"""nginx_proxy's ACME path, from the controller: a certificate from pebble over http-01.

site.yml converged with cosyvoice_exposure=proxy, nginx_proxy_tls_mode=acme and
cosyvoice_public_address=tts.cosyvoice.test. pebble runs on the controller
(molecule/acme/pebble-ctl, state in <ephemeral dir>/pebble): ACME on the docker
bridge, its DNS answering every name with the container's address; the
controller resolves the name through the /etc/hosts line pebble-ctl added.
Traffic: the controller's loopback and the container only.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtensionOID

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tests.lib.targets import PROJECT, ansible_playbook, container_ip, figure  # noqa: E402

NAME = "tts.cosyvoice.test"  # cosyvoice_public_address in molecule.yml
LIVE = "/etc/letsencrypt/live/cosyvoice"
SITE = "/etc/nginx/sites-available/cosyvoice.conf"
HOOK = "/etc/letsencrypt/renewal-hooks/deploy/reload-nginx"
WEBROOT = "/var/lib/nginx-proxy-acme"
USER = ("tester", "molecule-acme-pw")  # fixture from molecule.yml
STATE = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/nonexistent")) / "pebble"
ROOT = STATE / "pebble-root.pem"
INTERMEDIATE = STATE / "pebble-intermediate.pem"
PEBBLE_LOG = STATE / "pebble.log"
VALIDATION = f"Attempting to validate w/ HTTP: http://{NAME}:80/.well-known/acme-challenge/"


@pytest.fixture(scope="module")
def ip(host) -> str:
    return container_ip(host)


def load(pem: str | bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode() if isinstance(pem, str) else pem)


def dns_names(cert: x509.Certificate) -> list[str]:
    return cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value.get_values_for_type(
        x509.DNSName
    )


def served(ip: str) -> x509.Certificate:
    """The leaf nginx serves for NAME (SNI), the chain verified against pebble's root and NAME."""
    ctx = ssl.create_default_context(cafile=str(ROOT))
    with socket.create_connection((ip, 443), timeout=10) as sock, ctx.wrap_socket(sock, server_hostname=NAME) as tls:
        return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


def live_cert(host) -> x509.Certificate:
    return load(host.file(f"{LIVE}/cert.pem").content_string)


def validations() -> list[str]:
    """pebble's http-01 attempts for NAME (tokens), in order."""
    return re.findall(re.escape(VALIDATION) + r"([A-Za-z0-9_-]+)", PEBBLE_LOG.read_text())


def nginx_main_pid(host) -> str:
    return host.check_output("systemctl show -p MainPID --value nginx")


# --------------------------------------------------------------------------- issuance


def test_certificate_issued_by_pebble_for_the_public_name(host, tmp_path):
    cert = live_cert(host)
    # Only the fully qualified name: the wired inventory_hostname (cv-acme) has no dot
    # and an ACME CA would refuse it (nginx_proxy_acme_domains filter).
    assert dns_names(cert) == [NAME]
    intermediate = load(INTERMEDIATE.read_bytes())
    assert cert.issuer == intermediate.subject
    leaf = tmp_path / "leaf.pem"
    leaf.write_text(host.file(f"{LIVE}/cert.pem").content_string)
    check = subprocess.run(
        ["openssl", "verify", "-CAfile", str(ROOT), "-untrusted", str(INTERMEDIATE), str(leaf)],
        capture_output=True, text=True, check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_certbot_used_the_webroot_and_pebble(host):
    conf = host.file("/etc/letsencrypt/renewal/cosyvoice.conf").content_string
    assert "authenticator = webroot" in conf
    assert re.search(r"^server = https://[0-9.]+:14000/dir$", conf, re.MULTILINE), conf
    assert f"{NAME} = {WEBROOT}" in conf


def test_challenge_answered_on_port_80(host):
    tokens = validations()
    assert tokens, f"no http-01 validation of {NAME} in {PEBBLE_LOG}"
    log = PEBBLE_LOG.read_text()
    assert re.search(r"authz \S+ set VALID by completed challenge", log)
    # The same token, fetched by pebble's VA from nginx on port 80 of the target.
    access = host.check_output("cat /var/log/nginx/access.log")
    assert re.search(rf'"GET /\.well-known/acme-challenge/{re.escape(tokens[0])} HTTP/1\.1" 200 .*Pebble-VA', access), access[-2000:]
    # certbot removed its challenge files afterwards.
    assert host.check_output(f"find {WEBROOT}/.well-known/acme-challenge -type f | wc -l") == "0"


# --------------------------------------------------------------------------- serving


def test_nginx_serves_the_acme_certificate(host, ip):
    site = host.file(SITE).content_string
    assert f"ssl_certificate {LIVE}/fullchain.pem;" in site
    assert f"ssl_certificate_key {LIVE}/privkey.pem;" in site
    assert served(ip).serial_number == live_cert(host).serial_number


def test_https_by_name_from_the_controller():
    """The URL users open: the name (controller's /etc/hosts), pebble's chain, the login."""
    ctx = ssl.create_default_context(cafile=str(ROOT))
    auth = "Basic " + base64.b64encode(":".join(USER).encode()).decode()
    for path, headers, expected in (("/healthz", {}, 200), ("/", {}, 401), ("/", {"Authorization": auth}, 200)):
        conn = http.client.HTTPSConnection(NAME, 443, context=ctx, timeout=30)
        try:
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            resp.read()
            if resp.status in (301, 302, 307, 308):  # the app answers / with a redirect to its root
                assert resp.getheader("location", "").startswith(("/", f"https://{NAME}/")), resp.getheaders()
                continue
            assert resp.status == expected, (path, resp.status)
        finally:
            conn.close()


def test_port_80_answers_challenges_and_redirects_the_rest():
    conn = http.client.HTTPConnection(NAME, 80, timeout=10)
    try:
        conn.request("GET", "/.well-known/acme-challenge/no-such-token")
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 404  # served from the webroot, not redirected
        conn.request("GET", "/tts?x=1")
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 301
        assert resp.getheader("location") == f"https://{NAME}/tts?x=1"
    finally:
        conn.close()


def test_verify_role_checked_tls_against_pebbles_root():
    report = json.loads((PROJECT / "reports" / "cv-acme" / "report.json").read_text())
    checks = {c["id"]: c for c in report["checks"]}
    assert checks["tls"]["status"] == "ok", checks["tls"]
    assert str(ROOT) in checks["tls"]["summary"]
    assert checks["client.http"]["summary"].startswith(f"GET https://{NAME}/")


# --------------------------------------------------------------------------- renewal


def test_renewal_reloads_nginx(host, ip):
    """certbot renew (as its timer would run it): the deploy hook reloads nginx, nobody else does."""
    hook = host.file(HOOK)
    assert hook.mode == 0o755 and "systemctl reload nginx" in hook.content_string
    before, pid, attempts = served(ip).serial_number, nginx_main_pid(host), len(validations())
    start = time.monotonic()
    host.check_output("certbot renew --force-renewal --no-random-sleep-on-renew --non-interactive")
    renewed = live_cert(host).serial_number
    assert renewed != before
    for _ in range(50):
        if served(ip).serial_number == renewed:
            break
        time.sleep(0.2)
    assert served(ip).serial_number == renewed, "nginx still serves the old certificate"
    figure(f"acme renewal (certbot renew + deploy hook reload) served in {time.monotonic() - start:.1f} s")
    assert nginx_main_pid(host) == pid, "nginx was restarted, not reloaded"
    # pebble reuses no authorization (PEBBLE_AUTHZREUSE=0): the renewal was validated on port 80 again.
    assert len(validations()) > attempts


def test_reconverge_after_renewal_changes_nothing(host, ip):
    renewed = served(ip).serial_number
    playbook = str(Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"]) / "converge.yml")
    result = ansible_playbook(playbook, "--tags", "proxy", timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    counts = re.findall(r"^\S+\s*:\s*ok=\d+\s+changed=(\d+)", result.stdout.split("PLAY RECAP")[-1], re.MULTILINE)
    assert counts and sum(map(int, counts)) == 0, result.stdout[-3000:]
    assert served(ip).serial_number == renewed
