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
import uuid
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

    def upload(self, name: str, content: bytes, content_type: str = "audio/wav") -> dict[str, object]:
        """Upload a file (Gradio's /gradio_api/upload) and return the FileData to pass as an input."""
        boundary = "----cosyvoice-test-" + uuid.uuid4().hex
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{name}\"\r\n"
                f"Content-Type: {content_type}\r\n\r\n").encode() + content + f"\r\n--{boundary}--\r\n".encode()
        paths = json.loads(self.request("gradio_api/upload", data=body,
                                         headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}))
        return {"path": paths[0], "orig_name": name, "meta": {"_type": "gradio.FileData"}}

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


    def call_ui(self, api_name: str, *args: object) -> list[object]:
        """Run an event the way the browser does (/queue/join + /queue/data).

        Unlike /call/<api_name> (whose error event carries `null` in Gradio 5.4), the
        browser's protocol carries the gr.Error message the user sees.
        """
        config = json.loads(self.request("config"))
        fn_index = next(d["id"] for d in config["dependencies"] if d.get("api_name") == api_name)
        session = uuid.uuid4().hex[:11]
        self.request("gradio_api/queue/join", data=json.dumps(
            {"data": list(args), "fn_index": fn_index, "session_hash": session, "event_data": None}).encode(),
            headers={"Content-Type": "application/json"})
        stream = self.request(f"gradio_api/queue/data?session_hash={session}").decode()
        for line in stream.splitlines():
            if not line.startswith("data:"):
                continue
            msg = json.loads(line.split(":", 1)[1])
            if msg.get("msg") == "process_completed":
                output = msg.get("output") or {}
                if not msg.get("success", False):
                    raise RuntimeError(f"{api_name} failed: {output.get('error')}")
                return list(output.get("data") or [])
        raise RuntimeError(f"{api_name}: no result in the queue stream: {stream[:500]!r}")


def synthesize(base_url: str, text: str, *, login: tuple[str, str] | None = None,
               basic_auth: tuple[str, str] | None = None, cafile: str | None = None,
               mode: str = "sft", speaker: str = "", speed: float = 1.0, prompt_text: str = "",
               prompt_wav: bytes | None = None, instruct_text: str = "", timeout: float = 60.0) -> bytes:
    """Run the WebUI's `synthesize` API and return the WAV bytes it produced."""
    client = Client(base_url, login=login, basic_auth=basic_auth, cafile=cafile, timeout=timeout)
    prompt = client.upload("prompt.wav", prompt_wav) if prompt_wav is not None else None
    result = client.call("synthesize", text, mode, speaker, prompt_text, prompt, instruct_text, 0, speed)
    audio = result[0]
    url = audio["url"] if isinstance(audio, dict) else audio
    return client.request(str(url))


def tone_wav(seconds: float = 2.0, rate: int = 16000) -> bytes:
    """A voiced-sounding test prompt: a 140 Hz harmonic series with a slow amplitude envelope."""
    import math

    frames = bytearray()
    for i in range(int(seconds * rate)):
        t = i / rate
        envelope = 0.5 + 0.5 * math.sin(2 * math.pi * 3 * t)
        sample = sum(math.sin(2 * math.pi * 140 * k * t) / k for k in range(1, 8)) * 0.25 * envelope
        frames += int(max(-1.0, min(1.0, sample)) * 32767).to_bytes(2, "little", signed=True)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(frames))
    return buf.getvalue()


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


__all__ = ["Client", "synthesize", "tone_wav", "wav_stats", "urllib"]
_ = urllib.error
