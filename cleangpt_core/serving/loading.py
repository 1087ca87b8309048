"""From a run directory to a served application: the engine and the Starlette app around it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.applications import Starlette

from cleangpt_core.serving.app import DEFAULT_MAX_CONCURRENT, DEFAULT_MAX_REQUEST_BYTES, DEFAULT_MAX_WAITING, Server
from cleangpt_core.serving.chat import load_chat_template
from cleangpt_core.serving.engine import DEFAULT_MAX_INSPECT_WEIGHTS, Engine

DEFAULT_MAX_TOKENS_LIMIT = 2048


def load_engine(
    run: str | Path,
    *,
    device: str = "cpu",
    name: str | None = None,
    max_tokens_limit: int = DEFAULT_MAX_TOKENS_LIMIT,
    max_inspect_weights: int = DEFAULT_MAX_INSPECT_WEIGHTS,
    chat_template: Path | None = None,
) -> Engine:
    """The model and tokenizer of `run` (a checkpoint or run directory), served as `name` (default: its folder's).

    `chat_template`: a Jinja file for /v1/chat/completions instead of the tokenizer's own or the plain one.
    """
    from cleangpt_core.distributed.devices import choose_device
    from cleangpt_core.model.serialization import load_trained_model

    model, tokenizer, _ = load_trained_model(run, map_location=choose_device(device))
    served = name or Path(run).resolve().name
    return Engine(
        model,
        tokenizer,
        served,
        max_tokens_limit=max_tokens_limit,
        max_inspect_weights=max_inspect_weights,
        chat_template=load_chat_template(tokenizer, chat_template),
    )


def build_app(
    run: str | Path,
    *,
    api_key: str | None = None,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    max_concurrent: int = DEFAULT_MAX_CONCURRENT,
    max_waiting: int = DEFAULT_MAX_WAITING,
    host: str = "127.0.0.1",
    allowed_origins: tuple[str, ...] = (),
    **engine_options: Any,
) -> Starlette:
    """The ASGI application serving `run` (bound to `host`); `engine_options` go to `load_engine`."""
    server = Server(
        load_engine(run, **engine_options),
        api_key=api_key,
        max_request_bytes=max_request_bytes,
        max_concurrent=max_concurrent,
        max_waiting=max_waiting,
        host=host,
        allowed_origins=allowed_origins,
    )
    return server.app()
