"""Entry point: python -m cosyvoice_launcher --host 0.0.0.0 --port 7860 ..."""

from __future__ import annotations

import logging
import os
import sys

from .config import ConfigError, parse_args
from .engines import SynthesisError, load_engine
from .server import BindError, bind_listener, mark_ready, sd_notify

log = logging.getLogger("cosyvoice_launcher")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        cfg = parse_args(argv)
    except ConfigError as exc:
        log.error("configuration: %s", exc)
        return 2
    log.info("engine %s, listening on %s:%s, root path %s, login %s, share off",
             cfg.engine, cfg.host, cfg.port, cfg.root_path, "on" if cfg.auth else "OFF")
    if cfg.host in ("127.0.0.1", "::1", "localhost"):
        log.warning("bound to %s: only this host can connect (fine behind nginx; for direct access use 0.0.0.0)",
                    cfg.host)
    mark_ready(os.environ.get("COSYVOICE_READY_FILE"), ready=False)  # not until the engine is loaded
    try:
        sock = bind_listener(cfg.host, cfg.port)
    except BindError as exc:
        log.error("%s", exc)
        return 3
    sd_notify(f"STATUS=loading engine {cfg.engine}")
    try:
        engine = load_engine(cfg.engine, model_dir=cfg.model_dir, voice=cfg.espeak_voice, fp16=cfg.fp16,
                             wetext_dir=cfg.wetext_dir, require_text_frontend=cfg.require_text_frontend)
    except (SynthesisError, OSError) as exc:
        log.error("engine %s failed to load: %s", cfg.engine, exc)
        return 4
    from .webui import serve  # Gradio is imported only once the engine is up

    def ready(url: str) -> None:
        log.info("ready: %s", url)
        sd_notify(f"READY=1\nSTATUS=serving {url}")
        mark_ready(os.environ.get("COSYVOICE_READY_FILE"), ready=True)

    serve(cfg, engine, sock, ready)
    return 0


if __name__ == "__main__":
    sys.exit(main())
