"""Speech engines behind the WebUI (no Gradio imports here, so this is unit-testable).

* ``CosyVoiceEngine`` adapts CosyVoice's ``AutoModel`` (cosyvoice/cli/cosyvoice.py):
  CosyVoice 1 (300M), 2 and 3 models, the four WebUI modes, and CosyVoice3's
  prompt format, where the prompt text (zero-shot), the text (cross-lingual)
  and the instruction (instruct) must carry ``<|endofprompt|>`` — upstream's
  webui.py passes them bare, so zero-shot with a CosyVoice3 model fails there.
* ``EspeakEngine`` speaks with espeak-ng: the same UI and API on hosts without
  a GPU or a model (demo, CI). It produces real audio.
"""

from __future__ import annotations

import io
import logging
import shutil
import subprocess
import wave
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

MODES: dict[str, str] = {
    "sft": "Pretrained voice (预训练音色)",
    "zero_shot": "3s voice clone (3s极速复刻)",
    "cross_lingual": "Cross-lingual clone (跨语种复刻)",
    "instruct": "Instruct (自然语言控制)",
}
log = logging.getLogger("cosyvoice_launcher")

END_OF_PROMPT = "<|endofprompt|>"
SYSTEM_PROMPT = "You are a helpful assistant."


class SynthesisError(ValueError):
    """A request the engine cannot serve; the message is shown to the user."""


@dataclass(frozen=True)
class Request:
    text: str
    mode: str = "sft"
    speaker: str = ""
    prompt_text: str = ""
    prompt_wav: str | None = None
    instruct_text: str = ""
    seed: int = 0
    speed: float = 1.0


@dataclass(frozen=True)
class Audio:
    sample_rate: int
    pcm16: bytes  # mono, little-endian signed 16-bit

    @property
    def seconds(self) -> float:
        return len(self.pcm16) / 2 / self.sample_rate

    def to_wav(self) -> bytes:
        buf = io.BytesIO()
        with wave.open(buf, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(self.sample_rate)
            w.writeframes(self.pcm16)
        return buf.getvalue()


class Engine(Protocol):
    name: str
    sample_rate: int

    def speakers(self) -> list[str]: ...

    def synthesize(self, req: Request) -> Audio: ...


def check_request(req: Request, max_text_length: int) -> None:
    if req.mode not in MODES:
        raise SynthesisError(f"unknown mode {req.mode!r}; choose one of {', '.join(MODES)}")
    if not req.text.strip():
        raise SynthesisError("the text to synthesise is empty")
    if len(req.text) > max_text_length:
        raise SynthesisError(f"the text is {len(req.text)} characters; the limit is {max_text_length}")
    if not 0.5 <= req.speed <= 2.0:
        raise SynthesisError("speed must be between 0.5 and 2.0")


def float_to_pcm16(samples: Iterable[float]) -> bytes:
    """[-1, 1] floats -> PCM16 bytes (numpy when present, else the stdlib)."""
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is always there with CosyVoice
        import array

        return array.array("h", (int(max(-1.0, min(1.0, s)) * 32767) for s in samples)).tobytes()
    arr = np.clip(np.asarray(samples, dtype=np.float32).reshape(-1), -1.0, 1.0)
    return (arr * 32767).astype("<i2").tobytes()


def with_end_of_prompt(text: str, prefix: str = SYSTEM_PROMPT) -> str:
    """CosyVoice3 wants '<system prompt><|endofprompt|>' before the prompt; keep a user's own."""
    if END_OF_PROMPT in text:
        return text
    return f"{prefix}{END_OF_PROMPT}{text}"


class CosyVoiceEngine:
    """Adapter over CosyVoice's AutoModel (the object that webui.py calls `cosyvoice`)."""

    name = "cosyvoice"

    def __init__(self, model_dir: str, fp16: bool = False, auto_model: Callable[..., Any] | None = None,
                 seed_fn: Callable[[int], None] | None = None, require_text_frontend: bool = True) -> None:
        if auto_model is None:  # pragma: no cover - needs the real package
            from cosyvoice.cli.cosyvoice import AutoModel as auto_model
            from cosyvoice.utils.common import set_all_random_seed as seed_fn
        self.model = auto_model(model_dir=model_dir, fp16=fp16)
        self.sample_rate = int(self.model.sample_rate)
        self._seed = seed_fn or (lambda _seed: None)
        names = {cls.__name__ for cls in type(self.model).__mro__}
        self.generation = 3 if "CosyVoice3" in names else 2 if "CosyVoice2" in names else 1
        loader = getattr(auto_model, "__module__", "?") + "." + getattr(auto_model, "__name__", "?")
        log.info("model %s loaded by %s as %s (sample rate %d Hz)", model_dir, loader,
                 type(self.model).__name__, self.sample_rate)
        # Upstream falls back to no text normalisation without a word when ttsfrd and wetext
        # both fail (no resources, no hub, wrong permissions): numbers and symbols are then
        # read out wrongly. That is a deployment fault: say so and refuse to serve.
        self.text_frontend = str(getattr(getattr(self.model, "frontend", None), "text_frontend", "") or "")
        if self.text_frontend:
            log.info("text frontend: %s", self.text_frontend)
        elif require_text_frontend:
            raise SynthesisError("no text frontend is available (neither ttsfrd nor wetext loaded; see the "
                                 "messages above). Re-run the cosyvoice role to stage the wetext resources, "
                                 "or start with --allow-no-text-frontend")
        else:
            log.warning("text frontend: NONE (text is not normalised; --allow-no-text-frontend)")

    def speakers(self) -> list[str]:
        return list(self.model.list_available_spks()) or [""]

    def _chunks(self, req: Request) -> Iterable[dict[str, Any]]:
        m, v3 = self.model, self.generation == 3
        if req.mode == "sft":
            if not req.speaker:
                raise SynthesisError("this model has no pretrained voices; use voice clone with a prompt audio")
            return m.inference_sft(req.text, req.speaker, stream=False, speed=req.speed)
        if req.mode in ("zero_shot", "cross_lingual") and not req.prompt_wav:
            raise SynthesisError("this mode needs a prompt audio (upload or record up to 30 s, 16 kHz or more)")
        if req.mode == "zero_shot":
            if not req.prompt_text.strip():
                raise SynthesisError("voice clone needs the prompt text: what is said in the prompt audio")
            prompt_text = with_end_of_prompt(req.prompt_text) if v3 else req.prompt_text
            return m.inference_zero_shot(req.text, prompt_text, req.prompt_wav, stream=False, speed=req.speed)
        if req.mode == "cross_lingual":
            text = with_end_of_prompt(req.text) if v3 else req.text
            return m.inference_cross_lingual(text, req.prompt_wav, stream=False, speed=req.speed)
        # instruct
        if not req.instruct_text.strip():
            raise SynthesisError("instruct mode needs an instruction, e.g. 'Speak slowly and calmly'")
        if self.generation == 1:
            return m.inference_instruct(req.text, req.speaker, req.instruct_text, stream=False, speed=req.speed)
        if not req.prompt_wav:
            raise SynthesisError("instruct mode with this model needs a prompt audio for the voice")
        if END_OF_PROMPT in req.instruct_text:
            instruct = req.instruct_text
        elif v3:
            instruct = f"{SYSTEM_PROMPT} {req.instruct_text}{END_OF_PROMPT}"
        else:
            instruct = f"{req.instruct_text}{END_OF_PROMPT}"
        return m.inference_instruct2(req.text, instruct, req.prompt_wav, stream=False, speed=req.speed)

    def synthesize(self, req: Request) -> Audio:
        self._seed(req.seed)
        pcm = b"".join(float_to_pcm16(chunk["tts_speech"].numpy().flatten()) for chunk in self._chunks(req))
        if not pcm:
            raise SynthesisError("the model returned no audio")
        return Audio(self.sample_rate, pcm)


class EspeakEngine:
    """espeak-ng behind the same interface. Prompt audio and instructions are ignored."""

    name = "espeak"
    VOICES = ("en-us", "en", "cmn", "yue", "ja", "de", "fr", "es")

    def __init__(self, voice: str = "en-us", binary: str | None = None,
                 run: Callable[..., subprocess.CompletedProcess[bytes]] = subprocess.run) -> None:
        self.binary = binary or shutil.which("espeak-ng") or "espeak-ng"
        self.voice = voice
        self._run = run
        probe = self._speak("ready", voice, 1.0)  # fail at start, not at the first request
        self.sample_rate = probe.sample_rate

    def speakers(self) -> list[str]:
        return [self.voice] + [v for v in self.VOICES if v != self.voice]

    def _speak(self, text: str, voice: str, speed: float) -> Audio:
        proc = self._run([self.binary, "--stdin", "--stdout", "-v", voice, "-s", str(int(175 * speed))],
                         input=text.encode("utf-8"), capture_output=True, timeout=60, check=False)
        if proc.returncode != 0 or not proc.stdout:
            raise SynthesisError(f"espeak-ng failed: {proc.stderr.decode(errors='replace').strip() or proc.returncode}")
        with wave.open(io.BytesIO(proc.stdout)) as w:
            return Audio(w.getframerate(), w.readframes(w.getnframes()))

    def synthesize(self, req: Request) -> Audio:
        voice = req.speaker if req.speaker in self.VOICES else self.voice
        return self._speak(req.text, voice, req.speed)


def load_engine(engine: str, *, model_dir: str | None = None, voice: str = "en-us", fp16: bool = False,
                wetext_dir: str | None = None, require_text_frontend: bool = True) -> Engine:
    if engine == "espeak":
        return EspeakEngine(voice=voice)
    if engine == "cosyvoice":
        if not model_dir:
            raise SynthesisError("engine cosyvoice needs a model directory")
        if wetext_dir:
            from .textnorm import TextNormError, use_local_wetext

            try:
                use_local_wetext(wetext_dir)
            except TextNormError as exc:
                raise SynthesisError(str(exc)) from None
        return CosyVoiceEngine(model_dir, fp16=fp16, require_text_frontend=require_text_frontend)
    raise SynthesisError(f"unknown engine {engine!r}")
