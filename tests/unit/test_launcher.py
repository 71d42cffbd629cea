"""The launcher's config parsing, engines and server helpers (no Gradio needed)."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import types
import wave

import pytest
from cosyvoice_launcher import config, engines, server


def _wav(seconds: float = 0.2, rate: int = 22050, amplitude: int = 8000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        n = int(seconds * rate)
        w.writeframes(b"".join(((amplitude if i % 50 < 25 else -amplitude).to_bytes(2, "little", signed=True))
                               for i in range(n)))
    return buf.getvalue()


# ---------------------------------------------------------------- config

def test_defaults_are_loopback_and_7860():
    cfg = config.parse_args(["--engine", "espeak"])
    assert (cfg.host, cfg.port, cfg.root_path) == ("127.0.0.1", 7860, "/")
    assert cfg.health_path == "/healthz"


def test_root_path_and_health_path():
    cfg = config.parse_args(["--engine", "espeak", "--root-path", "tts/", "--host", "0.0.0.0", "--port", "8080"])
    assert cfg.root_path == "/tts"
    assert cfg.health_path == "/tts/healthz"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--engine", "espeak", "--port", "0"], "outside 1-65535"),
        (["--engine", "espeak", "--port", "abc"], "not a number"),
        (["--engine", "espeak", "--host", "bad host"], "neither an IP"),
        (["--engine", "espeak", "--host", "300.1.1.1"], "neither an IP"),
        (["--engine", "cosyvoice"], "--model-dir is required"),
        (["--engine", "espeak", "--queue-size", "0"], "--queue-size"),
        (["--engine", "espeak", "--root-path", "/x/../y"], "--root-path"),
    ],
)
def test_bad_flags_say_what_to_change(argv, message):
    with pytest.raises(config.ConfigError, match=message):
        config.parse_args(argv)


def test_auth_file_must_be_private(tmp_path):
    path = tmp_path / "auth.json"
    path.write_text(json.dumps([{"name": "alice", "password": "pw-123456"}]))
    os.chmod(path, 0o644)
    with pytest.raises(config.ConfigError, match="must be 0600"):
        config.load_auth_file(path)
    os.chmod(path, 0o600)
    assert config.load_auth_file(path) == (("alice", "pw-123456"),)


def test_auth_file_entries_need_name_and_password(tmp_path):
    path = tmp_path / "auth.json"
    path.write_text(json.dumps([{"name": "alice"}]))
    os.chmod(path, 0o600)
    with pytest.raises(config.ConfigError, match="entry 0"):
        config.load_auth_file(path)


def test_passwords_are_not_in_the_config_repr(tmp_path):
    path = tmp_path / "auth.json"
    path.write_text(json.dumps([{"name": "alice", "password": "very-secret"}]))
    os.chmod(path, 0o600)
    cfg = config.parse_args(["--engine", "espeak", "--auth-file", str(path)])
    assert "very-secret" not in repr(cfg)


# ---------------------------------------------------------------- CosyVoice adapter

class _Tensor:
    def __init__(self, values):
        self._values = values

    def numpy(self):
        import numpy as np

        return np.asarray(self._values, dtype="float32")


class FakeCosyVoice:
    """A test double of CosyVoice's AutoModel result: same method names and arguments."""

    sample_rate = 24000

    def __init__(self, model_dir, fp16=False, spks=("中文女",), text_frontend="wetext"):
        self.model_dir, self.fp16, self.calls, self._spks = model_dir, fp16, [], list(spks)
        # CosyVoiceFrontEnd.text_frontend: 'ttsfrd', 'wetext' or '' (upstream's silent fallback)
        self.frontend = types.SimpleNamespace(text_frontend=text_frontend)

    def list_available_spks(self):
        return self._spks

    def _out(self, name, *args, **kwargs):
        self.calls.append((name, args, kwargs))
        yield {"tts_speech": _Tensor([[0.5, -0.5, 0.25]])}
        yield {"tts_speech": _Tensor([[1.5, -2.0]])}  # clipped to [-1, 1]

    def inference_sft(self, *a, **k):
        return self._out("sft", *a, **k)

    def inference_zero_shot(self, *a, **k):
        return self._out("zero_shot", *a, **k)

    def inference_cross_lingual(self, *a, **k):
        return self._out("cross_lingual", *a, **k)

    def inference_instruct(self, *a, **k):
        return self._out("instruct", *a, **k)

    def inference_instruct2(self, *a, **k):
        return self._out("instruct2", *a, **k)


class CosyVoice2(FakeCosyVoice):
    pass


class CosyVoice3(CosyVoice2):
    pass


def _engine(cls=CosyVoice3, **kw):
    made = {}

    def factory(**kwargs):
        made["model"] = cls(**kwargs, **kw)
        return made["model"]

    seeds = []
    eng = engines.CosyVoiceEngine("/models/Fun-CosyVoice3-0.5B", auto_model=factory, seed_fn=seeds.append)
    return eng, made["model"], seeds


def test_no_text_frontend_is_a_start_error_unless_allowed(caplog):
    """Upstream serves without text normalisation when wetext fails to load; the launcher refuses."""
    with pytest.raises(engines.SynthesisError, match="no text frontend is available"):
        _engine(text_frontend="")
    caplog.set_level("INFO", logger="cosyvoice_launcher")

    def factory(**kwargs):
        return CosyVoice3(**kwargs, text_frontend="")

    eng = engines.CosyVoiceEngine("/m", auto_model=factory, require_text_frontend=False)
    assert eng.text_frontend == ""
    assert "text frontend: NONE" in caplog.text


def test_the_loader_and_text_frontend_are_logged(caplog):
    caplog.set_level("INFO", logger="cosyvoice_launcher")
    eng, _, _ = _engine()
    assert eng.text_frontend == "wetext"
    assert "text frontend: wetext" in caplog.text
    assert "as CosyVoice3 (sample rate 24000 Hz)" in caplog.text


def test_adapter_detects_the_model_generation():
    assert _engine(CosyVoice3)[0].generation == 3
    assert _engine(CosyVoice2)[0].generation == 2
    assert _engine(FakeCosyVoice)[0].generation == 1


def test_zero_shot_on_cosyvoice3_gets_the_required_prompt_format():
    eng, model, seeds = _engine()
    audio = eng.synthesize(engines.Request("你好", mode="zero_shot", prompt_text="希望你以后能够做的比我还好呦。",
                                           prompt_wav="/tmp/p.wav", seed=42))
    name, args, kwargs = model.calls[0]
    assert name == "zero_shot"
    assert args[1] == "You are a helpful assistant.<|endofprompt|>希望你以后能够做的比我还好呦。"
    assert args[2] == "/tmp/p.wav" and kwargs["stream"] is False
    assert seeds == [42]
    assert audio.sample_rate == 24000
    # five samples from two chunks, clipped into PCM16 range
    assert len(audio.pcm16) == 10
    assert int.from_bytes(audio.pcm16[6:8], "little", signed=True) == 32767
    assert int.from_bytes(audio.pcm16[8:10], "little", signed=True) == -32767


def test_a_users_own_endofprompt_is_kept():
    eng, model, _ = _engine()
    eng.synthesize(engines.Request("x", mode="zero_shot", prompt_text="Speak warmly.<|endofprompt|>hi",
                                   prompt_wav="/p.wav"))
    assert model.calls[0][1][1] == "Speak warmly.<|endofprompt|>hi"


def test_zero_shot_on_cosyvoice2_is_passed_bare():
    eng, model, _ = _engine(CosyVoice2)
    eng.synthesize(engines.Request("x", mode="zero_shot", prompt_text="hello", prompt_wav="/p.wav"))
    assert model.calls[0][1][1] == "hello"


def test_cross_lingual_on_cosyvoice3_prefixes_the_text():
    eng, model, _ = _engine()
    eng.synthesize(engines.Request("Hello there", mode="cross_lingual", prompt_wav="/p.wav"))
    assert model.calls[0][1][0] == "You are a helpful assistant.<|endofprompt|>Hello there"


def test_instruct_uses_instruct2_with_the_v3_format():
    eng, model, _ = _engine()
    eng.synthesize(engines.Request("x", mode="instruct", instruct_text="请用广东话表达。", prompt_wav="/p.wav"))
    name, args, _ = model.calls[0]
    assert name == "instruct2"
    assert args[1] == "You are a helpful assistant. 请用广东话表达。<|endofprompt|>"


def test_instruct_on_cosyvoice1_uses_the_speaker():
    eng, model, _ = _engine(FakeCosyVoice)
    eng.synthesize(engines.Request("x", mode="instruct", speaker="中文女", instruct_text="calm"))
    assert model.calls[0][0] == "instruct" and model.calls[0][1][1] == "中文女"


def test_sft_uses_the_pretrained_voice():
    eng, model, _ = _engine()
    eng.synthesize(engines.Request("x", mode="sft", speaker="中文女", speed=1.5))
    assert model.calls[0] == ("sft", ("x", "中文女"), {"stream": False, "speed": 1.5})


@pytest.mark.parametrize(
    ("req", "message"),
    [
        (engines.Request("x", mode="zero_shot", prompt_text="hi"), "prompt audio"),
        (engines.Request("x", mode="zero_shot", prompt_wav="/p.wav"), "prompt text"),
        (engines.Request("x", mode="cross_lingual"), "prompt audio"),
        (engines.Request("x", mode="instruct", prompt_wav="/p.wav"), "instruction"),
        (engines.Request("x", mode="instruct", instruct_text="calm"), "prompt audio"),
    ],
)
def test_incomplete_requests_are_explained(req, message):
    eng, _, _ = _engine()
    with pytest.raises(engines.SynthesisError, match=message):
        eng.synthesize(req)


def test_model_without_voices_explains_sft():
    eng, _, _ = _engine(spks=())
    assert eng.speakers() == [""]
    with pytest.raises(engines.SynthesisError, match="no pretrained voices"):
        eng.synthesize(engines.Request("x", mode="sft", speaker=""))


@pytest.mark.parametrize(
    ("req", "message"),
    [
        (engines.Request("   "), "empty"),
        (engines.Request("x" * 11), "limit is 10"),
        (engines.Request("x", mode="sing"), "unknown mode"),
        (engines.Request("x", speed=3.0), "speed"),
    ],
)
def test_check_request(req, message):
    with pytest.raises(engines.SynthesisError, match=message):
        engines.check_request(req, max_text_length=10)


# ---------------------------------------------------------------- espeak engine

def test_espeak_engine_runs_espeak_with_stdin_and_returns_its_audio():
    calls = []

    def fake_run(argv, **kwargs):
        calls.append((argv, kwargs))
        return subprocess.CompletedProcess(argv, 0, stdout=_wav(), stderr=b"")

    eng = engines.EspeakEngine(voice="en-us", binary="/usr/bin/espeak-ng", run=fake_run)
    audio = eng.synthesize(engines.Request("text; rm -rf /", speaker="cmn", speed=2.0))
    argv, kwargs = calls[-1]
    assert argv == ["/usr/bin/espeak-ng", "--stdin", "--stdout", "-v", "cmn", "-s", "350"]
    assert kwargs["input"] == "text; rm -rf /".encode()  # text never goes into argv
    assert audio.sample_rate == 22050 and audio.seconds == pytest.approx(0.2, abs=0.01)
    wav = audio.to_wav()
    with wave.open(io.BytesIO(wav)) as w:
        assert w.getnchannels() == 1 and w.getframerate() == 22050


def test_espeak_engine_fails_at_start_when_espeak_is_broken():
    def broken(argv, **kwargs):
        return subprocess.CompletedProcess(argv, 1, stdout=b"", stderr=b"espeak-ng: no voice")

    with pytest.raises(engines.SynthesisError, match="no voice"):
        engines.EspeakEngine(run=broken)


def test_unknown_engine():
    with pytest.raises(engines.SynthesisError, match="unknown engine"):
        engines.load_engine("tacotron")


# ---------------------------------------------------------------- server helpers

def test_port_conflict_names_the_fix():
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        with pytest.raises(server.BindError, match=f"port {port} on 127.0.0.1 is already in use.*ss -ltnp"):
            server.bind_listener("127.0.0.1", port)
    finally:
        holder.close()


def test_bind_to_a_foreign_address_names_the_fix():
    with pytest.raises(server.BindError, match="not an address of this host"):
        server.bind_listener("192.0.2.123", 0)


def test_bind_listener_listens():
    sock = server.bind_listener("127.0.0.1", 0)
    try:
        assert sock.getsockname()[0] == "127.0.0.1"
    finally:
        sock.close()


def test_mark_ready_writes_the_pid_once_loaded_and_removes_a_stale_file_at_start(tmp_path):
    ready = tmp_path / "cosyvoice.ready"
    ready.write_text("4242\n")  # left by an earlier process
    assert server.mark_ready(str(ready), ready=False) and not ready.exists()
    assert server.mark_ready(str(ready), ready=False)  # nothing to remove
    assert server.mark_ready(str(ready), ready=True)
    assert ready.read_text() == f"{os.getpid()}\n"
    assert list(tmp_path.iterdir()) == [ready]
    assert server.mark_ready(None, ready=True) is False
    assert server.mark_ready(str(tmp_path / "missing-dir" / "x.ready"), ready=True) is False


def test_sd_notify_sends_to_the_notify_socket(tmp_path, monkeypatch):
    path = str(tmp_path / "notify")
    recv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    recv.bind(path)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        assert server.sd_notify("READY=1") is True
        assert recv.recv(100) == b"READY=1"
        monkeypatch.delenv("NOTIFY_SOCKET")
        assert server.sd_notify("READY=1") is False
    finally:
        recv.close()





def test_listener_is_a_tcp_socket_so_asyncio_sets_nodelay():
    sock = server.bind_listener("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()
