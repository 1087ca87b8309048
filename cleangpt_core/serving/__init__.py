"""`cleangpt serve`: a run behind OpenAI's completions and chat completions APIs, an inspection endpoint and a
playground page.

`build_app(run)` returns the ASGI application (Starlette); `cleangpt serve RUN` runs it with uvicorn. Needs
the ``serve`` extra: ``pip install "cleangpt-core[serve]"``.
"""

from cleangpt_core.serving.app import Server
from cleangpt_core.serving.engine import Engine, TurnTaking
from cleangpt_core.serving.loading import build_app, load_engine

__all__ = ["Engine", "Server", "TurnTaking", "build_app", "load_engine"]
