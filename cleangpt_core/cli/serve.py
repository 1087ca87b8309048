"""`cleangpt serve RUN`: an OpenAI-compatible completions server with a playground page, on 127.0.0.1 by default."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import click


@click.command("serve")
@click.argument("run", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to listen on (other than loopback: a warning)."
)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--api-key", envvar="CLEANGPT_API_KEY", help="Require 'Authorization: Bearer KEY' (or $CLEANGPT_API_KEY)."
)
@click.option("--model-name", help="The model id clients ask for (default: RUN's folder name).")
@click.option(
    "--max-tokens-limit", default=2048, show_default=True, type=click.IntRange(min=1), help="Largest max_tokens."
)
@click.option("--max-request-bytes", default=1 << 20, show_default=True, type=click.IntRange(min=1024))
@click.option(
    "--max-concurrent", default=16, show_default=True, type=click.IntRange(min=1), help="Requests served at once."
)
@click.option(
    "--max-waiting",
    default=64,
    show_default=True,
    type=click.IntRange(min=0),
    help="Requests that may wait for a place; more are refused with a 429.",
)
@click.option(
    "--max-inspect-weights",
    default=4_000_000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Largest /v1/inspect answer, in attention weights (prompt tokens^2 x layers x heads).",
)
@click.option(
    "--allow-origin",
    "allowed_origins",
    multiple=True,
    metavar="ORIGIN",
    help="A web page origin (e.g. http://localhost:3000, or *) allowed to call the API from its own page "
    "(CORS); by default only the playground served here may. Repeatable.",
)
@click.option(
    "--chat-template",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A Jinja chat template for /v1/chat/completions (default: the tokenizer's own, else 'role: content' lines).",
)
@click.option("--device", default="cpu", show_default=True, help="torch device to run on (cpu, cuda, mps, auto).")
def serve(
    run: Path,
    host: str,
    port: int,
    api_key: str | None,
    model_name: str | None,
    max_tokens_limit: int,
    max_request_bytes: int,
    max_concurrent: int,
    max_waiting: int,
    max_inspect_weights: int,
    allowed_origins: tuple[str, ...],
    chat_template: Path | None,
    device: str,
) -> None:
    """Serve the model in RUN over HTTP: /v1/completions and /v1/chat/completions (OpenAI's API), /v1/inspect,
    and a playground at /."""
    if importlib.util.find_spec("uvicorn") is None or importlib.util.find_spec("starlette") is None:
        raise click.ClickException('cleangpt serve needs starlette and uvicorn: pip install "cleangpt-core[serve]"')
    import uvicorn

    from cleangpt_core.serving import build_app
    from cleangpt_core.serving.guard import LOOPBACK_NAMES

    if host not in LOOPBACK_NAMES:
        click.echo(
            f"warning: listening on {host}, reachable from other machines"
            + ("" if api_key else " by anyone: consider --api-key"),
            err=True,
        )
    app = build_app(
        run,
        api_key=api_key,
        max_request_bytes=max_request_bytes,
        max_concurrent=max_concurrent,
        max_waiting=max_waiting,
        host=host,
        allowed_origins=allowed_origins,
        max_inspect_weights=max_inspect_weights,
        chat_template=chat_template,
        device=device,
        name=model_name,
        max_tokens_limit=max_tokens_limit,
    )
    click.echo(f"serving {run} on http://{host}:{port}/ (playground), API at http://{host}:{port}/v1", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
