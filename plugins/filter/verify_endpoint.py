"""What is wrong with the endpoint the verify role is asked to check.

    {{ verify_endpoint | cosyvoice.deploy.verify_endpoint_problems }}   -> [] or ["it lacks url, ...", ...]

The endpoint is the cosyvoice_endpoint fact (docs/CONVENTIONS.md, made by the
cosyvoice_endpoint filter) or what playbooks/diagnose.yml computes. The verify
role's tasks/validate.yml fails with these messages before reading the host.
"""

from __future__ import annotations

from typing import Any

from ansible_collections.cosyvoice.deploy.plugins.filter.cosyvoice_endpoint import EXPOSURES as _ENDPOINT_EXPOSURES
from ansible_collections.cosyvoice.deploy.plugins.module_utils.netshape import port_number

# Keys the verify role reads.
ENDPOINT_KEYS = ("exposure", "bind_address", "backend_port", "public_ports", "public_address", "scheme",
                 "public_port", "root_path", "url", "health_path", "auth")
EXPOSURES = _ENDPOINT_EXPOSURES

MESSAGES = {
    "missing": "it is missing. Run the whole site.yml (playbooks/preflight.yml publishes cosyvoice_endpoint "
               "whatever --tags select), or playbooks/diagnose.yml, which computes it from cosyvoice_exposure, "
               "cosyvoice_server_port and cosyvoice_public_address",
    "keys": "it lacks {keys} (shape: docs/CONVENTIONS.md, made by the cosyvoice_endpoint filter)",
    "exposure": "exposure must be " + ", ".join(EXPOSURES) + ", not {value}",
    "backend_port": "backend_port must be 1-65535, not {value}",
    "public_ports": "public_ports must be a list",
    "health_path": "health_path must start with /",
    "public_address": "public_address is empty: set cosyvoice_public_address to the address users type in the browser",
}


def _value_problems(ep: dict[str, Any]) -> list[str]:
    """Problems with the values of a complete endpoint, in the order of MESSAGES."""
    found = {
        "exposure": ep["exposure"] not in EXPOSURES,
        "backend_port": port_number(ep["backend_port"]) is None,
        "public_ports": not isinstance(ep["public_ports"], (list, tuple)),
        "health_path": not (isinstance(ep["health_path"], str) and ep["health_path"].startswith("/")),
        "public_address": ep["exposure"] != "local" and not ep["public_address"],
    }
    return [MESSAGES[key].format(value=ep.get(key)) for key, bad in found.items() if bad]


def verify_endpoint_problems(endpoint: Any) -> list[str]:
    """[] when the verify role can use `endpoint`, else one message per problem."""
    ep = endpoint if isinstance(endpoint, dict) else {}
    if not ep:
        return [MESSAGES["missing"]]
    missing = [key for key in ENDPOINT_KEYS if key not in ep]
    if missing:
        return [MESSAGES["keys"].format(keys=", ".join(missing))]
    return _value_problems(ep)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"verify_endpoint_problems": verify_endpoint_problems}
