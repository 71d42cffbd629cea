"""The Gradio WebUI and HTTP surface (imports Gradio, FastAPI and uvicorn)."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from typing import Any

import gradio as gr
import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from .config import Config, join_path
from .engines import MODES, Engine, Request, SynthesisError, check_request
from .hygiene import (
    ForwardedHost,
    SelfContainedPage,
    forget_deleted_temp_files,
    forget_finished_events,
    prune_cache,
)

log = logging.getLogger("cosyvoice_launcher")


# System fonts only: the default theme imports Source Sans Pro from fonts.googleapis.com.
THEME = gr.themes.Default(
    font=["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Noto Sans", "Noto Sans CJK SC", "sans-serif"],
    font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "Noto Sans Mono", "monospace"],
)


def cache_dir() -> str:
    return os.environ.get("GRADIO_TEMP_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "gradio")


_PRUNING = threading.Lock()


def prune(cfg: Config) -> None:
    """One pass over Gradio's cache; never raises (a failed pass must not fail a request or the pruner).

    Passes do not overlap: a request arriving while one runs skips its own.
    """
    if not _PRUNING.acquire(blocking=False):
        return
    try:
        deleted, kept = prune_cache(cache_dir(), cfg.cache_max_files, cfg.cache_max_age_s,
                                    min_age_s=cfg.cache_grace_s)
    except Exception:  # noqa: BLE001 - logged, retried at the next request or minute
        log.exception("cache: pruning failed (retried at the next request)")
        return
    finally:
        _PRUNING.release()
    if deleted:
        log.info("cache: deleted %d old audio files, %d kept (max %d files, %d s)",
                 deleted, kept, cfg.cache_max_files, cfg.cache_max_age_s)


def start_cache_pruner(cfg: Config, every_s: float = 60.0) -> threading.Thread:
    """Prune Gradio's cache (prompts people upload, audio the service returns) in the background."""

    def loop() -> None:
        while True:
            prune(cfg)
            time.sleep(every_s)

    thread = threading.Thread(target=loop, name="cache-pruner", daemon=True)
    thread.start()
    return thread


def start_bookkeeping_sweep(app: FastAPI, blocks: gr.Blocks, every_s: float = 60.0) -> None:
    """Every minute, on the event loop: forget finished events and deleted temp files (hygiene.py)."""

    async def sweep() -> None:
        while True:
            await asyncio.sleep(every_s)
            try:
                events = forget_finished_events(getattr(blocks, "_queue", None), min_age_s=every_s)
                files = forget_deleted_temp_files(getattr(blocks, "temp_file_sets", None))
            except Exception:  # noqa: BLE001 - logged, tried again next minute
                log.exception("bookkeeping sweep failed")
                continue
            if events or files:
                log.info("bookkeeping: forgot %d finished events and %d deleted temp files", events, files)

    @app.on_event("startup")
    async def _start() -> None:
        app.state.bookkeeping_sweep = asyncio.get_running_loop().create_task(sweep())


def build_blocks(cfg: Config, engine: Engine) -> gr.Blocks:
    speakers = engine.speakers()
    mode_choices = [(label, key) for key, label in MODES.items()]

    def synthesize(text: str, mode: str, speaker: str, prompt_text: str, prompt_wav: str | None,
                   instruct_text: str, seed: float, speed: float) -> tuple[int, Any]:
        import numpy as np

        req = Request(text=text or "", mode=mode, speaker=speaker or "", prompt_text=prompt_text or "",
                      prompt_wav=prompt_wav, instruct_text=instruct_text or "", seed=int(seed or 0),
                      speed=float(speed or 1.0))
        started = time.monotonic()
        try:
            check_request(req, cfg.max_text_length)
            audio = engine.synthesize(req)
        except SynthesisError as exc:
            raise gr.Error(str(exc)) from None
        log.info("synthesised %.1f s of audio (mode %s, %d chars) in %.2f s",
                 audio.seconds, req.mode, len(req.text), time.monotonic() - started)
        prune(cfg)  # bounded at every request too, not only every minute
        # Gradio writes the WAV into its own cache (GRADIO_TEMP_DIR), which the pruner bounds.
        return audio.sample_rate, np.frombuffer(audio.pcm16, dtype="<i2")

    # delete_cache: Gradio's own sweep by age; start_cache_pruner adds the count limit.
    sweep = (max(60, min(600, cfg.cache_max_age_s)), cfg.cache_max_age_s)
    with gr.Blocks(title=cfg.title, analytics_enabled=False, theme=THEME, delete_cache=sweep) as blocks:
        gr.Markdown(f"## {cfg.title}\nEngine: **{engine.name}** · sample rate {engine.sample_rate} Hz")
        text = gr.Textbox(label="Text to synthesise (输入合成文本)", lines=3,
                          value="Hello! This voice comes from your own server.")
        with gr.Row():
            mode = gr.Radio(choices=mode_choices, value="sft", label="Mode (推理模式)")
            speaker = gr.Dropdown(choices=speakers, value=speakers[0], allow_custom_value=True,
                                  label="Voice (预训练音色)")
            speed = gr.Slider(0.5, 2.0, value=1.0, step=0.1, label="Speed (速度)")
            seed = gr.Number(value=0, precision=0, label="Seed (随机种子)")
        with gr.Row():
            prompt_wav = gr.Audio(sources=["upload", "microphone"], type="filepath",
                                  label="Prompt audio, ≥16 kHz, ≤30 s (prompt音频)")
            with gr.Column():
                prompt_text = gr.Textbox(label="Prompt text: what the prompt audio says (prompt文本)")
                instruct_text = gr.Textbox(label="Instruction (instruct文本)")
        button = gr.Button("Generate (生成音频)", variant="primary")
        output = gr.Audio(label="Result (合成音频)", type="filepath", autoplay=False)
        button.click(synthesize, inputs=[text, mode, speaker, prompt_text, prompt_wav, instruct_text, seed, speed],
                     outputs=output, api_name="synthesize")
    blocks.queue(max_size=cfg.queue_size, default_concurrency_limit=cfg.concurrency_limit)
    # Gradio keeps each browser session's state in memory, 10000 sessions by default (a few kB
    # each here, scripts/loadtest soak): bounded lower, oldest dropped first.
    blocks.state_session_capacity = cfg.session_capacity
    return blocks


def build_app(cfg: Config, engine: Engine) -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    health: dict[str, Any] = {"status": "ok", "engine": engine.name, "sample_rate": engine.sample_rate,
                              "root_path": cfg.root_path,
                              # Which process answered (cosyvoice_instances > 1: one port per instance).
                              "port": cfg.port}

    async def healthz() -> JSONResponse:
        # Answered without login: the watchdog and the verify role use it. It is
        # only reachable once the engine is loaded (the socket opens after that).
        return JSONResponse(health)

    for path in {"/healthz", cfg.health_path}:
        app.add_api_route(path, healthz, methods=["GET", "HEAD"], include_in_schema=False)
    blocks = build_blocks(cfg, engine)
    start_bookkeeping_sweep(app, blocks)
    app = gr.mount_gradio_app(
        app,
        blocks,
        path="" if cfg.root_path == "/" else cfg.root_path,
        # At "/" no root_path: with root_path="/" FastAPI answers "/" with 307 -> "//" and assets
        # load from "//assets". ForwardedHost gives Gradio the host for its file URLs instead.
        root_path=None if cfg.root_path == "/" else cfg.root_path,
        auth=list(cfg.auth) or None,
        auth_message="CosyVoice3: please log in" if cfg.auth else None,
        ssr_mode=False,
        show_error=True,
        max_file_size="20mb",
    )
    app.add_middleware(SelfContainedPage)
    app.add_middleware(ForwardedHost)
    return app


def serve(cfg: Config, engine: Engine, sock: Any, on_ready: Any) -> None:
    app = build_app(cfg, engine)
    config = uvicorn.Config(app, log_level="info", proxy_headers=True, forwarded_allow_ips="127.0.0.1",
                            timeout_keep_alive=30, access_log=False)
    server = uvicorn.Server(config)
    start_cache_pruner(cfg)
    on_ready(f"http://{cfg.host}:{cfg.port}{join_path(cfg.root_path, '')}")
    server.run(sockets=[sock])
