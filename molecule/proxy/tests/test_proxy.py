"""The `proxy` exposure as a client sees it: from the controller, to the container's IP only.

site.yml converged with cosyvoice_exposure=proxy and the espeak engine; nginx on
80/443 in front of the app on 127.0.0.1:7860.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import shlex
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tests.lib.browser import load_page  # noqa: E402
from tests.lib.gradio_api import synthesize, wav_stats  # noqa: E402
from tests.lib.targets import ansible_playbook, container_ip, figure, outcome  # noqa: E402

CERT = "/etc/nginx/ssl/cosyvoice/cosyvoice.crt"
KEY = "/etc/nginx/ssl/cosyvoice/cosyvoice.key"
SITE = "/etc/nginx/sites-available/cosyvoice.conf"
HTPASSWD = "/etc/nginx/cosyvoice.htpasswd"
USER = ("tester", "molecule-proxy-pw")  # fixture from molecule.yml
BACKEND_PORT = 7860
OVERHEAD_SCRIPT = Path(__file__).with_name("overhead.py")


@pytest.fixture(scope="module", autouse=True)
def proxy_deployed(host) -> None:
    """The last test switches the exposure away; a repeated `molecule verify` re-deploys the proxy first."""
    if not host.file(SITE).exists:
        result = run_playbook()
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]


@pytest.fixture(scope="module")
def ip(host) -> str:
    return container_ip(host)


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
    """The proxy layer (--tags proxy; preflight runs too) from the controller against molecule's inventory."""
    playbook = str(Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"]) / "converge.yml")
    return ansible_playbook(playbook, "--tags", "proxy", *args, timeout=600)


def recap_changed(output: str) -> int:
    """Sum of changed= over the PLAY RECAP lines."""
    counts = re.findall(r"^\S+\s*:\s*ok=\d+\s+changed=(\d+)", output.split("PLAY RECAP")[-1], re.MULTILINE)
    assert counts, output[-2000:]
    return sum(map(int, counts))


# --------------------------------------------------------------------------- login and TLS


def test_login_required(ip, cafile):
    status, headers, _ = https(ip, cafile, "/")
    assert status == 401
    assert headers["www-authenticate"].startswith("Basic")


def test_wrong_password_refused(ip, cafile):
    assert https(ip, cafile, "/", auth=(USER[0], "wrong"))[0] == 401


def get_ui(ip: str, cafile: str, path: str = "/") -> tuple[int, dict, bytes]:
    """GET with login, following same-origin redirects (the app answers / with 307 to //).

    Every Location must be the public https URL: proof that nginx forwards Host and proto.
    """
    for _ in range(3):
        status, headers, body = https(ip, cafile, path, auth=USER)
        if status not in (301, 302, 307, 308):
            break
        location = headers["location"]
        assert location.startswith(f"https://{ip}/"), location
        path = location[len(f"https://{ip}"):]
    return status, headers, body


def test_ui_with_login(ip, cafile):
    status, headers, body = get_ui(ip, cafile)
    assert status == 200, body[:300]
    assert b"gradio" in body.lower()
    assert headers.get("x-content-type-options") == "nosniff"
    assert "strict-transport-security" not in headers  # off with a self-signed certificate


def test_health_without_login(ip, cafile):
    status, _, body = https(ip, cafile, "/healthz")
    assert status == 200
    assert b'"engine":"espeak"' in body


def test_synthesis_through_the_proxy(ip, cafile):
    """Gradio's queue (POST + server-sent events) and the file download, all via nginx with TLS and login.

    The audio URL Gradio returns is built from the forwarded headers: it must be the public https URL.
    """
    wav = synthesize(f"https://{ip}/", "Synthesis through the reverse proxy works.", basic_auth=USER, cafile=cafile)
    rate, seconds, peak = wav_stats(wav)
    assert rate == 22050
    assert seconds > 1.0
    assert peak > 1000, "audio is silent"


def test_api_without_login_refused(ip, cafile):
    status, _, _ = https(ip, cafile, "/gradio_api/info")
    assert status == 401


def test_tls_verified_against_deployed_cert(ip, cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    with socket.create_connection((ip, 443), timeout=10) as raw, ctx.wrap_socket(raw, server_hostname=ip) as tls:
        cert = tls.getpeercert()
        assert ("IP Address", ip) in cert["subjectAltName"]
        assert tls.version() in ("TLSv1.2", "TLSv1.3")


def test_verify_layer_alone_trusts_the_deployed_certificate():
    """`site.yml --tags verify`: the nginx_proxy role does not run (it publishes the certificate in a full
    run), and the verify layer still trusts the self-signed certificate the proxy keeps (it failed with
    'not trusted: system CAs' before 1.12.0)."""
    playbook = str(Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"]) / "converge.yml")
    result = ansible_playbook(playbook, "--tags", "verify", timeout=600)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    assert "Result:   OK, every layer passed" in out and "certificate verified" in out, out[-3000:]
    # The proxy layer itself did not run (the preflight validates its input, whatever the tags).
    assert "nginx_proxy : Install nginx" not in out and "nginx_proxy : Deploy the site" not in out


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
    assert all("python" in line for line in app), "port 7860 is held by the launcher"


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
    out = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", ".")) / "reports" / "proxy-overhead.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    figure("proxy: " + json.dumps(figures, sort_keys=True))
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
    assert get_ui(ip, cafile)[0] == 200


def test_bad_input_fails_before_any_change(host):
    """Through the real layer: `provided` TLS without a certificate stops the run with nothing changed."""
    before = host.file(SITE).sha256sum
    result = run_playbook("-e", "nginx_proxy_tls_mode=provided")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert "nginx_proxy_tls_mode=provided needs a certificate" in output, output[-3000:]
    assert recap_changed(result.stdout) == 0
    assert host.file(SITE).sha256sum == before


def test_validate_rejects_bad_input():
    """More bad input, straight through tasks/validate.yml (cases and messages in bad_input.yml)."""
    playbook = str(Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"]) / "bad_input.yml")
    result = ansible_playbook(playbook, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert re.search(r"rescued=7\b", result.stdout), output[-4000:]
    assert recap_changed(result.stdout) == 0


def test_the_app_through_the_proxy_loads_nothing_from_other_hosts(ip):
    """Headless Chromium, logged in through nginx: the whole app loads from the service only."""
    user, password = USER
    seen = load_page(f"https://{user}:{password}@{ip}/", ignore_certificate_errors=True)
    assert seen.page_hosts == {ip}, seen.page_hosts
    assert seen.connections == {f"{ip}:443"}, seen.connections
    assert any(p.startswith("/assets/") for p in seen.paths), seen.paths
    assert not [p for p in seen.paths if p.startswith("//")], seen.paths


# --------------------------------------------------------------------------- wiring: inventory values


def test_inventory_value_of_a_settable_wired_variable_takes_effect(host, ip):
    """nginx_proxy_server_names from the inventory (here -e) wins over the derived names (--check --diff)."""
    result = run_playbook("--check", "--diff", "-e", json.dumps({"nginx_proxy_server_names": ["tts.example.test", ip]}))
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    assert "nginx_proxy_server_names (from the inventory)" in out, out[-4000:]
    assert re.search(r"^\+\s*server_name tts\.example\.test " + re.escape(ip) + ";", out, re.MULTILINE), out[-4000:]
    site = host.file("/etc/nginx/sites-available/cosyvoice.conf").content_string
    assert "tts.example.test" not in site  # --check changed nothing


def test_inventory_value_of_a_derived_variable_fails_in_preflight_with_its_name(host):
    before = host.file("/etc/nginx/sites-available/cosyvoice.conf").content_string
    result = run_playbook("-e", "nginx_proxy_upstream_port=9999")
    out = result.stdout + result.stderr
    assert result.returncode != 0, out[-3000:]
    assert ("nginx_proxy_upstream_port is set in the inventory, but site.yml derives it from cosyvoice_server_port "
            "(it would be 7860 here). Remove nginx_proxy_upstream_port and set cosyvoice_server_port instead.") in out, out[-3000:]
    assert "Wiring | Refuse inventory values" in out
    assert host.file("/etc/nginx/sites-available/cosyvoice.conf").content_string == before


# --------------------------------------------------------------------------- switching exposure (runs last)


def test_the_preflight_reads_the_host_once_for_every_layer_and_a_reboot_makes_each_read_again(host):
    """site.yml's preflight reads the host once for the cosyvoice, nginx_proxy and os_firewall layers and the
    PCI scan (module host_read, __site_host_read): on a converged host no layer reads the host again. After the
    driver layer's reboot (nvidia_driver_rebooted; forced here, there is no GPU) playbooks/nvidia_driver.yml
    forgets that read and each layer reads the host itself: the same answers, 0 changed either way."""
    playbook = str(Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"]) / "converge.yml")
    own_reads = ("cosyvoice : Read the host before changing anything",
                 "nginx_proxy : Find the packages that are not installed",
                 "os_firewall : Detect | Read the state of firewalld")
    proc = ansible_playbook(playbook, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and recap_changed(out) == 0, out[-4000:]
    assert outcome(out, "cosyvoice : Read the host - this layer's") == {"ok"}
    assert outcome(out, "nvidia_driver : Detect | Scan the PCI bus") == {"skipping"}
    for task in own_reads:
        assert outcome(out, task) == {"skipping"}, task
    assert outcome(out, "Forget the preflight's read of the host") == {"skipping"}

    proc = ansible_playbook(playbook, "-e", "nvidia_driver_rebooted=true", timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and recap_changed(out) == 0, out[-4000:]
    assert outcome(out, "Forget the preflight's read of the host") == {"ok"}
    assert outcome(out, "cosyvoice : Read the host before changing anything") == {"included"}
    for task in own_reads[1:]:
        assert outcome(out, task) == {"ok"}, task


def test_switching_away_from_proxy_removes_the_site(host):
    """Another exposure takes the site down and closes 80/443 (the app stays on 127.0.0.1)."""
    result = run_playbook("-e", "cosyvoice_exposure=direct")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert not host.file(SITE).exists
    assert not host.file(HTPASSWD).exists
    assert not host.service("nginx").is_running
    listeners = host.check_output("ss -Hltn")
    assert not re.search(r":(80|443)\s", listeners), listeners
    # The next `molecule verify` brings the proxy back first (fixture proxy_deployed).
