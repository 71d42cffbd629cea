"""The `proxy` exposure as a client sees it: from the controller, to the container's IP only."""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import shlex
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

CERT = "/etc/nginx/ssl/cosyvoice/cosyvoice.crt"
KEY = "/etc/nginx/ssl/cosyvoice/cosyvoice.key"
SITE = "/etc/nginx/sites-available/cosyvoice.conf"
HTPASSWD = "/etc/nginx/cosyvoice.htpasswd"
USER = ("tester", "molecule-proxy-pw")  # fixture from molecule.yml
BACKEND_PORT = 7860
OVERHEAD_SCRIPT = Path(__file__).with_name("overhead.py")


@pytest.fixture(scope="module")
def ip(host) -> str:
    return host.check_output("ip -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1 | head -n1")


@pytest.fixture(scope="module")
def cafile(host, tmp_path_factory) -> str:
    """The deployed self-signed certificate, fetched from the container: the trust anchor."""
    path = tmp_path_factory.mktemp("tls") / "cosyvoice.crt"
    path.write_text(host.file(CERT).content_string)
    return str(path)


def https(ip: str, cafile: str, path: str = "/", auth: tuple[str, str] | None = None) -> tuple[int, dict, bytes]:
    ctx = ssl.create_default_context(cafile=cafile)  # verifies the chain AND that the IP is in the SAN
    conn = http.client.HTTPSConnection(ip, 443, context=ctx, timeout=30)
    headers = {}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(auth).encode()).decode()
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def run_playbook(*args: str) -> subprocess.CompletedProcess[str]:
    """ansible-playbook from the controller against molecule's inventory (molecule's env is inherited)."""
    inventory = str(Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent)
    playbook = str(Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"]) / "converge.yml")
    exe = Path(sys.executable).with_name("ansible-playbook")
    cmd = [str(exe) if exe.exists() else "ansible-playbook", "-i", inventory, playbook, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)


def recap_changed(output: str) -> int:
    match = re.search(r"changed=(\d+)", output.split("PLAY RECAP")[-1])
    assert match, output[-2000:]
    return int(match.group(1))


# --------------------------------------------------------------------------- login and TLS


def test_login_required(ip, cafile):
    status, headers, _ = https(ip, cafile, "/")
    assert status == 401
    assert headers["www-authenticate"].startswith("Basic")


def test_wrong_password_refused(ip, cafile):
    assert https(ip, cafile, "/", auth=(USER[0], "wrong"))[0] == 401


def test_ui_with_login(ip, cafile):
    status, headers, body = https(ip, cafile, "/", auth=USER)
    assert status == 200, body[:300]
    assert headers.get("x-content-type-options") == "nosniff"
    assert "strict-transport-security" not in headers  # off with a self-signed certificate


def test_health_without_login(ip, cafile):
    assert https(ip, cafile, "/healthz")[0] == 200


def test_tls_verified_against_deployed_cert(ip, cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    import socket

    with socket.create_connection((ip, 443), timeout=10) as raw, ctx.wrap_socket(raw, server_hostname=ip) as tls:
        cert = tls.getpeercert()
        assert ("IP Address", ip) in cert["subjectAltName"]
        assert tls.version() in ("TLSv1.2", "TLSv1.3")


def test_untrusted_without_the_cert(ip):
    with pytest.raises(ssl.SSLCertVerificationError):
        https(ip, None, "/healthz")  # type: ignore[arg-type]


def test_http_redirects_to_https(ip):
    conn = http.client.HTTPConnection(ip, 80, timeout=10)
    try:
        conn.request("GET", "/some/path?x=1")
        resp = conn.getresponse()
        assert resp.status == 301
        assert resp.getheader("Location") == f"https://{ip}/some/path?x=1"
    finally:
        conn.close()


@pytest.mark.parametrize(("version", "accepted"), [("tls1", False), ("tls1_1", False), ("tls1_2", True), ("tls1_3", True)])
def test_tls_versions(ip, cafile, version, accepted):
    # SECLEVEL=0 lets the client OFFER TLS 1.0/1.1 (OpenSSL 3 refuses to by
    # default), so a failure proves the server refused them.
    cmd = ["openssl", "s_client", "-connect", f"{ip}:443", f"-{version}", "-CAfile", cafile,
           "-verify_return_error", "-servername", "cv-proxy"]
    if version != "tls1_3":
        cmd += ["-cipher", "DEFAULT@SECLEVEL=0"]
    result = subprocess.run(cmd, input="", capture_output=True, text=True, timeout=30, check=False)
    output = result.stdout + result.stderr
    if accepted:
        assert result.returncode == 0, output
        assert "Verify return code: 0 (ok)" in output
    else:
        assert result.returncode != 0
        assert "alert protocol version" in output, output


# --------------------------------------------------------------------------- the host


def test_listeners(host):
    listeners = host.check_output("ss -Hltnp")
    assert re.search(r"0\.0\.0\.0:443\s.*nginx", listeners), listeners
    assert re.search(r"0\.0\.0\.0:80\s.*nginx", listeners), listeners
    app = [line for line in listeners.splitlines() if re.search(rf":{BACKEND_PORT}\s", line)]
    assert app, listeners
    assert all(f"127.0.0.1:{BACKEND_PORT}" in line for line in app), app


def test_secret_files(host):
    key = host.file(KEY)
    assert (key.user, key.group, key.mode) == ("root", "root", 0o600)
    htpasswd = host.file(HTPASSWD)
    assert (htpasswd.user, htpasswd.group, htpasswd.mode) == ("root", "www-data", 0o640)
    assert htpasswd.content_string.startswith(f"{USER[0]}:$apr1$")


# --------------------------------------------------------------------------- proxy overhead


def test_overhead(host):
    """p50/p99 of GET /healthz, direct vs through nginx, measured in one run inside the container."""
    script = OVERHEAD_SCRIPT.read_text()
    result = host.run(f"python3 -c {shlex.quote(script)} {BACKEND_PORT} 300")
    assert result.rc == 0, result.stderr
    figures = json.loads(result.stdout)
    out = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/tmp")) / "proxy-overhead.json"
    out.write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))
    assert figures["proxy_keepalive"]["p50_ms"] < 50, figures


# --------------------------------------------------------------------------- safety (negative cases)


def test_invalid_extra_config_fails_and_old_config_keeps_serving(host, ip, cafile):
    before = host.file(SITE).sha256sum
    result = run_playbook("-e", json.dumps({"nginx_proxy_extra_config": "this_is_not_a_directive on;"}))
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert 'unknown directive \\"this_is_not_a_directive\\"' in output or \
        'unknown directive "this_is_not_a_directive"' in output, output[-3000:]
    assert host.file(SITE).sha256sum == before
    assert "this_is_not_a_directive" not in host.file(SITE).content_string
    assert https(ip, cafile, "/")[0] == 401
    assert https(ip, cafile, "/", auth=USER)[0] == 200


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"cosyvoice_auth_users": []}, "nginx_proxy_auth_users is empty"),
        ({"nginx_proxy_tls_mode": "provided"}, "nginx_proxy_tls_mode=provided needs a certificate"),
        ({"nginx_proxy_server_names": ["bad name"]}, "'bad name' is not a host name"),
    ],
)
def test_bad_input_fails_before_any_change(host, extra, message):
    before = host.file(SITE).sha256sum
    result = run_playbook("-e", json.dumps(extra))
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert message in output, output[-3000:]
    assert recap_changed(output) == 0
    assert host.file(SITE).sha256sum == before
