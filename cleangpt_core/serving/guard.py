"""Which requests reach the server at all: a Host the bound address answers to, and no foreign Origin.

A server on 127.0.0.1 is reachable from every web page the machine's browser opens. Browsers let any page
send it a "simple" cross-origin POST (``Content-Type: text/plain``, no preflight), and a page whose DNS name
is rebound to 127.0.0.1 may even read the answers. So, as Jupyter and vLLM's guards do:

- the ``Host`` header must name the bound address (any loopback name when it is a loopback one): a rebound
  name such as ``attacker.example`` is refused;
- a request that carries an ``Origin`` must come from the page the server itself serves, or from an origin
  the user allowed on purpose (``cleangpt serve --allow-origin ORIGIN``, which also answers CORS preflights);
- the API's POST routes take only ``Content-Type: application/json`` (checked by the routes, `app.py`),
  which a page cannot send across origins without a preflight this guard refuses.

A server bound to every interface (0.0.0.0, ::) answers to any name: it was exposed on purpose, and its
protection is ``--api-key``.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from cleangpt_core.serving.schemas import RequestError

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
EVERY_INTERFACE = ("0.0.0.0", "::", "")
ANY_ORIGIN = "*"


def host_names(bound: str) -> frozenset[str] | None:
    """The names a request's Host may give for a server bound to `bound`; None: any name."""
    bound = bound.strip("[]").lower()
    if bound in EVERY_INTERFACE:
        return None
    if bound in LOOPBACK_NAMES or bound.startswith("127."):
        return frozenset((*LOOPBACK_NAMES, bound))
    return frozenset((bound,))


def _host_name(host: str) -> str:
    """The name in a Host header, without its port: ``[::1]:8000`` -> ``::1``, ``localhost:8000`` -> ``localhost``."""
    if host.startswith("["):
        return host[1 : host.find("]")].lower() if "]" in host else host.lower()
    return host.rsplit(":", 1)[0].lower() if host.count(":") == 1 else host.lower()


class RequestGuard:
    """ASGI middleware refusing (403, OpenAI's error object) a request whose Host or Origin is not allowed."""

    def __init__(self, app: ASGIApp, *, bound: str, allowed_origins: Sequence[str] = ()) -> None:
        self.names = host_names(bound)
        self.bound = bound
        self.allowed_origins = frozenset(origin.rstrip("/") for origin in allowed_origins)
        if self.allowed_origins:  # deliberate cross-origin use: browsers need CORS headers and preflights
            app = CORSMiddleware(
                app,
                allow_origins=sorted(self.allowed_origins),
                allow_methods=["GET", "POST"],
                allow_headers=["Authorization", "Content-Type"],
            )
        self.app = app

    def refusal(self, headers: Headers) -> RequestError | None:
        """Why a request with these headers is refused, or None."""
        host = headers.get("host", "")
        if self.names is not None and _host_name(host) not in self.names:
            return RequestError(
                f"the Host header names {host!r}, but this server (bound to {self.bound}) answers only to "
                f"{', '.join(sorted(self.names))}: a guard against DNS rebinding; connect by one of those names",
                status=403,
                code="host_not_allowed",
            )
        origin = headers.get("origin")
        if origin is None or ANY_ORIGIN in self.allowed_origins or origin.rstrip("/") in self.allowed_origins:
            return None
        parts = urlsplit(origin)
        if parts.scheme in ("http", "https") and parts.netloc.lower() == host.lower():
            return None  # the playground page this server serves
        return RequestError(
            f"a cross-origin request from {origin!r} is refused; to allow that page on purpose, start the "
            f"server with --allow-origin {origin}",
            status=403,
            code="origin_not_allowed",
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (error := self.refusal(Headers(scope=scope))) is not None:
            await JSONResponse(error.body(), status_code=error.status)(scope, receive, send)
            return
        await self.app(scope, receive, send)
