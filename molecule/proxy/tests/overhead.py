"""Latency of GET /healthz, direct vs through nginx; runs INSIDE the target (stdlib only).

    python3 overhead.py BACKEND_PORT REQUESTS  ->  JSON with p50/p99 in milliseconds

Both paths run in the same process, one after the other, each on one
keep-alive connection (as a browser does), after a warm-up. A second, shorter
series opens a new connection per request (TCP, plus the TLS handshake for
the proxy).
"""

import http.client
import json
import ssl
import statistics
import sys
import time

PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 7860
N = min(int(sys.argv[2]) if len(sys.argv) > 2 else 300, 2000)
PATH = "/healthz"
TLS = ssl.create_default_context()
TLS.check_hostname = False  # loopback; the certificate is checked from the controller
TLS.verify_mode = ssl.CERT_NONE


def direct():
    return http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)


def proxy():
    return http.client.HTTPSConnection("127.0.0.1", 443, context=TLS, timeout=30)


def get(conn):
    start = time.perf_counter()
    conn.request("GET", PATH)
    resp = conn.getresponse()
    resp.read()
    if resp.status != 200:
        raise SystemExit(f"GET {PATH}: HTTP {resp.status}")
    return (time.perf_counter() - start) * 1000


def summary(samples):
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return {"n": len(samples), "p50_ms": round(cuts[49], 3), "p99_ms": round(cuts[98], 3),
            "mean_ms": round(statistics.fmean(samples), 3)}


def keepalive(factory, n):
    conn = factory()
    for _ in range(20):
        get(conn)
    samples = [get(conn) for _ in range(n)]
    conn.close()
    return summary(samples)


def fresh(factory, n):
    samples = []
    for _ in range(n):
        conn = factory()
        samples.append(get(conn))
        conn.close()
    return summary(samples)


result = {
    "path": PATH,
    "direct_keepalive": keepalive(direct, N),
    "proxy_keepalive": keepalive(proxy, N),
    "direct_new_connection": fresh(direct, N // 3),
    "proxy_new_connection": fresh(proxy, N // 3),
}
for kind in ("keepalive", "new_connection"):
    d, p = result[f"direct_{kind}"], result[f"proxy_{kind}"]
    result[f"ratio_{kind}_p50"] = round(p["p50_ms"] / d["p50_ms"], 2)
    result[f"added_{kind}_p50_ms"] = round(p["p50_ms"] - d["p50_ms"], 3)
print(json.dumps(result))
