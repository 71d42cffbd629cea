"""A tiny client for the launcher's Gradio API, stdlib only (used by the tests).

    wav = synthesize("http://10.0.0.5:7860/", "hello", login=("alice", "pw"))

`login` is Gradio's own login (direct exposure); `basic_auth` is nginx's
(proxy exposure); `cafile` verifies TLS against the deployed certificate.
"""

from __future__ import annotations

import base64
import http.cookiejar
import io
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
import wave
from dataclasses import dataclass


@dataclass
class Client:
    base_url: str
    login: tuple[str, str] | None = None
    basic_auth: tuple[str, str] | None = None
    cafile: str | None = None
    timeout: float = 60.0

    def __post_init__(self) -> None:
        if not self.base_url.endswith("/"):
            self.base_url += "/"
        handlers: list[urllib.request.BaseHandler] = [
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),
            urllib.request.ProxyHandler({}),  # test traffic never goes through a proxy
        ]
        if self.base_url.startswith("https:"):
            ctx = ssl.create_default_context(cafile=self.cafile)
            ctx.check_hostname = False  # the cert's SAN carries the IP; hostname checks are the verify role's job
            handlers.append(urllib.request.HTTPSHandler(context=ctx))
        self._opener = urllib.request.build_opener(*handlers)
        if self.login:
            self.request("login", data=urllib.parse.urlencode(
                {"username": self.login[0], "password": self.login[1]}).encode(),
                headers={"Content-Type": "application/x-www-form-urlencoded"})

    def request(self, path: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> bytes:
        url = path if path.startswith("http") else urllib.parse.urljoin(self.base_url, path)
        req = urllib.request.Request(url, data=data, headers=dict(headers or {}))
        if self.basic_auth:
            token = base64.b64encode(":".join(self.basic_auth).encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        with self._opener.open(req, timeout=self.timeout) as resp:
            return resp.read()

    def call(self, api_name: str, *args: object) -> list[object]:
        body = json.dumps({"data": list(args)}).encode()
        event = json.loads(self.request(f"gradio_api/call/{api_name}", data=body,
                                        headers={"Content-Type": "application/json"}))
        stream = self.request(f"gradio_api/call/{api_name}/{event['event_id']}").decode()
        kind = None
        for line in stream.splitlines():
            if line.startswith("event:"):
                kind = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and kind in ("complete", "error"):
                payload = json.loads(line.split(":", 1)[1])
                if kind == "error":
                    raise RuntimeError(f"{api_name} failed: {payload}")
                return list(payload)
        raise RuntimeError(f"{api_name}: no result in event stream: {stream[:500]!r}")


def synthesize(base_url: str, text: str, *, login: tuple[str, str] | None = None,
               basic_auth: tuple[str, str] | None = None, cafile: str | None = None,
               mode: str = "sft", speaker: str = "", speed: float = 1.0) -> bytes:
    """Run the WebUI's `synthesize` API and return the WAV bytes it produced."""
    client = Client(base_url, login=login, basic_auth=basic_auth, cafile=cafile)
    result = client.call("synthesize", text, mode, speaker, "", None, "", 0, speed)
    audio = result[0]
    url = audio["url"] if isinstance(audio, dict) else audio
    return client.request(str(url))


def wav_stats(data: bytes) -> tuple[int, float, int]:
    """(sample rate, duration in seconds, peak absolute PCM16 amplitude) of a mono/stereo PCM16 WAV."""
    with wave.open(io.BytesIO(data)) as w:
        frames = w.readframes(w.getnframes())
        rate, width = w.getframerate(), w.getsampwidth()
        duration = w.getnframes() / rate
    if width != 2:
        raise ValueError(f"expected 16-bit PCM, got {width * 8}-bit")
    peak = max((abs(int.from_bytes(frames[i:i + 2], "little", signed=True)) for i in range(0, len(frames), 2)),
               default=0)
    return rate, duration, peak


__all__ = ["Client", "synthesize", "wav_stats", "urllib"]
_ = urllib.error
