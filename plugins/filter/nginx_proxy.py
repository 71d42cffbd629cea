"""Input checks and certificate names for the `nginx_proxy` role.

The role's `tasks/validate.yml` asserts that these lists are empty, so bad input
fails before anything on the host changes, with a message that names the
variable and the fix (and never a password):

    {{ nginx_proxy_server_names | nginx_proxy_server_name_problems }}
    {{ nginx_proxy_auth_users | nginx_proxy_auth_problems }}
    {{ nginx_proxy_server_names | nginx_proxy_subject_alt_names }}  -> ['DNS:tts.example.com', 'IP:203.0.113.7']
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

# One DNS label: letters, digits, hyphens; no hyphen at either end; 1-63 chars.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*$")
# nginx and X.509 both accept a wildcard only as the whole left-most label.
_WILDCARD = re.compile(rf"^\*\.(?=.{{1,251}}$){_LABEL}(?:\.{_LABEL})+$")
# What nginx's basic auth and htpasswd files can hold as a user name.
_USER = re.compile(r"^[^:\s]{1,255}$")


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def server_name_kind(name: Any) -> str | None:
    """'ip', 'dns', 'wildcard', or None when nginx/X.509 cannot use the name."""
    if not isinstance(name, str):
        return None
    if _ip(name) is not None:
        return "ip"
    if _WILDCARD.match(name):
        return "wildcard"
    if _HOSTNAME.match(name):
        return "dns"
    return None


def server_name_problems(names: Any, variable: str = "nginx_proxy_server_names") -> list[str]:
    """Why `names` cannot be the site's server_name / the certificate's SAN ([] when fine)."""
    if not isinstance(names, (list, tuple)) or not names:
        return [f"{variable} must be a non-empty list of host names or IP addresses, got {names!r}"]
    problems = []
    for name in names:
        if server_name_kind(name) is None:
            problems.append(
                f"{variable}: {name!r} is not a host name (tts.example.com), a wildcard (*.example.com) "
                "or an IP address; fix the entry (it is also the certificate's subjectAltName)"
            )
    return problems


def _acme_name(name: Any) -> bool:
    """A plain, fully qualified DNS name: what an ACME CA validates over http-01.

    Single-label names (an inventory_hostname like gpu-1, which site.yml's wiring adds to the
    server names) have no public suffix: Let's Encrypt refuses the whole order for them.
    """
    return server_name_kind(name) == "dns" and "." in name


def acme_domain_problems(domains: Any, variable: str = "nginx_proxy_acme_domains") -> list[str]:
    """ACME http-01 can only prove fully qualified DNS names: no IP addresses, wildcards or short names."""
    if not isinstance(domains, (list, tuple)) or not domains:
        return [
            (
                f"{variable} is empty: nginx_proxy_tls_mode=acme needs at least one public DNS name that points at "
                "this host (an IP address, a wildcard or a name without a dot cannot be validated over http-01)"
            )
        ]
    return [
        f"{variable}: {name!r} cannot be validated over ACME http-01; list fully qualified DNS names only "
        "(tts.example.com)"
        for name in domains
        if not _acme_name(name)
    ]


def acme_domains(names: Any) -> list[str]:
    """The fully qualified DNS names among `names` (what an ACME CA can issue a certificate for)."""
    if not isinstance(names, (list, tuple)):
        return []
    return [n for n in names if _acme_name(n)]


def subject_alt_names(names: Any) -> list[str]:
    """['tts.example.com', '203.0.113.7'] -> ['DNS:tts.example.com', 'IP:203.0.113.7'] (order kept, no duplicates)."""
    problems = server_name_problems(names)
    if problems:
        raise ValueError("; ".join(problems))
    result: list[str] = []
    for name in names:
        ip = _ip(name)
        entry = f"IP:{ip.compressed}" if ip is not None else f"DNS:{name.lower()}"
        if entry not in result:
            result.append(entry)
    return result


SERVER_AUTH = ("serverAuth", "TLS Web Server Authentication")


def selfsigned_current(cert_info: Any, key: Any, names: Any) -> bool:
    """Whether the self-signed certificate on the host is the one the role would issue now, read from
    cosyvoice.deploy.tls_selfsigned_state (the fields of community.crypto.x509_certificate_info, with
    valid_at.renew) and the key read there (or the openssl_privatekey result):
    self-signed by the current key, the same subject and subjectAltName, CA:FALSE, serverAuth, and not
    within the renewal window. Anything else (or anything unreadable) is False: the role then builds
    the request and issues again (x509_certificate decides)."""
    if not isinstance(cert_info, dict) or not isinstance(key, dict) or cert_info.get("failed"):
        return False
    try:
        wanted_sans = subject_alt_names(names)
    except ValueError:
        return False
    key_fp = (key.get("fingerprint") or {}).get("sha256")
    cert_fp = (cert_info.get("public_key_fingerprints") or {}).get("sha256")
    common_name = names[0] if names and len(names[0]) <= 64 else None
    subject = cert_info.get("subject") or {}
    return bool(
        key_fp and key_fp == cert_fp
        and (cert_info.get("valid_at") or {}).get("renew") is True
        and cert_info.get("issuer") == subject
        and subject.get("commonName") == common_name
        and sorted(cert_info.get("subject_alt_name") or []) == sorted(wanted_sans)
        and not cert_info.get("subject_alt_name_critical")
        and cert_info.get("basic_constraints") == ["CA:FALSE"]
        and len(cert_info.get("extended_key_usage") or []) == 1
        and cert_info["extended_key_usage"][0] in SERVER_AUTH
    )


def auth_problems(users: Any, variable: str = "nginx_proxy_auth_users") -> list[str]:
    """Why `users` cannot go into the htpasswd file ([] when fine). Never echoes a password."""
    if not isinstance(users, (list, tuple)):
        return [f"{variable} must be a list of {{name, password}} entries"]
    problems: list[str] = []
    seen: set[str] = set()
    for index, user in enumerate(users):
        if not isinstance(user, dict):
            problems.append(f"{variable}[{index}] must be a mapping with keys name and password")
            continue
        name = user.get("name")
        label = f"{variable}[{index}]" + (f" ({name})" if isinstance(name, str) and _USER.match(name) else "")
        if not isinstance(name, str) or not _USER.match(name):
            problems.append(f"{label}: name must be 1-255 characters without ':' or whitespace")
        elif name in seen:
            problems.append(f"{label}: duplicate user name; list each user once")
        else:
            seen.add(name)
        password = user.get("password")
        if not isinstance(password, str) or not password:
            problems.append(f"{label}: password is empty; set it from ansible-vault")
        elif "\n" in password or "\r" in password:
            problems.append(f"{label}: password contains a line break (check the vault value)")
        unknown = sorted(set(user) - {"name", "password"})
        if unknown:
            problems.append(f"{label}: unknown keys {', '.join(map(str, unknown))} (only name and password)")
    return problems


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "nginx_proxy_server_name_problems": server_name_problems,
            "nginx_proxy_acme_domain_problems": acme_domain_problems,
            "nginx_proxy_acme_domains": acme_domains,
            "nginx_proxy_subject_alt_names": subject_alt_names,
            "nginx_proxy_selfsigned_current": selfsigned_current,
            "nginx_proxy_auth_problems": auth_problems,
        }
