"""The HTTP application: OpenAI's completions API, an inspection endpoint, tokenizer endpoints and the playground.

Built on Starlette (the ASGI toolkit FastAPI is made of) and run by uvicorn. FastAPI would add request
validation and OpenAPI pages, but its validation answers 422 in its own shape, while OpenAI's clients
expect a 400 with ``error.param``; so bodies are validated here with pydantic (`schemas.parse`), and
Starlette gives the rest: routing, streaming responses, static files.

Model work runs on a pool of worker threads (`Engine` makes them take turns at the model); the event loop
only moves bytes, so it always notices a client that disconnects and stops that request's generation.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from cleangpt_core.serving.engine import ChoiceResult, ClientGoneError, Engine, Piece
from cleangpt_core.serving.schemas import (
    CompletionRequest,
    DetokenizeRequest,
    InspectRequest,
    RequestError,
    TokenizeRequest,
    parse,
)

DEFAULT_MAX_REQUEST_BYTES = 1 << 20
DEFAULT_MAX_CONCURRENT = 16  # requests being served at once; more wait for a worker


def _error(error: RequestError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status)


async def _body(request: Request, limit: int) -> Any:
    """The request's JSON body, refused past `limit` bytes or when it is not JSON."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(f"the request body is {declared} bytes; this server takes at most {limit}", status=413)
    data = b""
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise RequestError(f"the request body is over {limit} bytes, the most this server takes", status=413)
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RequestError(f"the request body is not valid JSON: {error}") from None


async def _until_disconnected(request: Request) -> None:
    """Return when the client closes its connection (the body has been read already)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


class Server:
    """The routes, around one `Engine`."""

    def __init__(
        self,
        engine: Engine,
        *,
        api_key: str | None = None,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        max_concurrent: int = DEFAULT_MAX_CONCURRENT,
    ) -> None:
        self.engine = engine
        self.api_key = api_key
        self.max_request_bytes = max_request_bytes
        self.workers = ThreadPoolExecutor(max_concurrent, thread_name_prefix="cleangpt-serve")
        self.created = int(time.time())

    def app(self) -> Starlette:
        static = resources.files("cleangpt_core.serving") / "static"
        routes = [
            Route("/v1/models", self._guarded(self.models), methods=["GET"]),
            Route("/v1/completions", self._guarded(self.completions), methods=["POST"]),
            Route("/v1/inspect", self._guarded(self.inspect), methods=["POST"]),
            Route("/tokenizer_info", self._guarded(self.tokenizer_info), methods=["GET"]),
            Route("/tokenize", self._guarded(self.tokenize), methods=["POST"]),
            Route("/detokenize", self._guarded(self.detokenize), methods=["POST"]),
            Mount("/", StaticFiles(directory=str(static), html=True), name="playground"),
        ]
        return Starlette(routes=routes, lifespan=self._lifespan)

    @contextlib.asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        """On shutdown, stop waiting requests; running ones end with their clients' connections."""
        yield
        self.workers.shutdown(wait=False, cancel_futures=True)

    def _guarded(self, handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        """The handler behind the bearer-token check (when the server has a key), turning RequestError into JSON."""

        async def guarded(request: Request) -> Response:
            try:
                if self.api_key is not None:
                    given = request.headers.get("authorization", "")
                    if not hmac.compare_digest(given.encode(), f"Bearer {self.api_key}".encode()):
                        raise RequestError(
                            "missing or wrong API key: send 'Authorization: Bearer KEY'",
                            status=401,
                            code="invalid_api_key",
                        )
                return await handler(request)
            except RequestError as error:
                return _error(error)

        return guarded

    async def _run(self, request: Request, work: Callable[[], Any], cancelled: threading.Event) -> Any:
        """`work` on a worker thread; `cancelled` is set if the client disconnects first, which stops it."""
        job = asyncio.get_running_loop().run_in_executor(self.workers, work)
        watcher = asyncio.ensure_future(_until_disconnected(request))
        try:
            await asyncio.wait({job, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if watcher.done():
                cancelled.set()
            watcher.cancel()
        return await job

    # -- routes ---------------------------------------------------------------------------------------------

    async def models(self, _request: Request) -> Response:
        entry = {"id": self.engine.name, "object": "model", "created": self.created, "owned_by": "cleangpt"}
        return JSONResponse({"object": "list", "data": [entry]})

    async def completions(self, request: Request) -> Response:
        body = parse(CompletionRequest, await _body(request, self.max_request_bytes))
        stops = self.engine.check(body)
        prompts = self.engine.prompts(body.prompt)
        identity = {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time())}
        identity["model"] = self.engine.name
        if body.stream:
            return StreamingResponse(
                self._stream(request, body, prompts, stops, identity), media_type="text/event-stream"
            )
        cancelled = threading.Event()

        def work() -> list[ChoiceResult]:
            return [
                self.engine.complete(body, index, ids, stops, None, cancelled.is_set)
                for index, ids in enumerate(prompts)
            ]

        try:
            results = await self._run(request, work, cancelled)
        except ClientGoneError:  # the client is gone: nobody reads this
            return Response(status_code=499)
        prompt_tokens = sum(r.prompt_tokens for r in results)
        completion_tokens = sum(r.completion_tokens for r in results)
        choices = [
            {"index": r.index, "text": r.text, "logprobs": r.logprobs, "finish_reason": r.finish_reason}
            for r in results
        ]
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        return JSONResponse({**identity, "choices": choices, "usage": usage})

    async def _stream(
        self,
        request: Request,
        body: CompletionRequest,
        prompts: list[list[int]],
        stops: list[str],
        identity: dict[str, Any],
    ) -> AsyncIterator[str]:
        """Server-sent events: one `text_completion` chunk per piece of text, then ``[DONE]``."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Piece | BaseException | None] = asyncio.Queue()
        cancelled = threading.Event()

        def emit(piece: Piece) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, piece)

        def work() -> None:
            try:
                for index, ids in enumerate(prompts):
                    self.engine.complete(body, index, ids, stops, emit, cancelled.is_set)
                loop.call_soon_threadsafe(queue.put_nowait, None)
            except BaseException as error:  # handed to the event loop, which ends the stream
                loop.call_soon_threadsafe(queue.put_nowait, error)

        loop.run_in_executor(self.workers, work)
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    message = str(item) if isinstance(item, RequestError) else "generation failed on the server"
                    yield f"data: {json.dumps({'error': {'message': message, 'type': 'server_error'}})}\n\n"
                    break
                choice = asdict(item)
                yield f"data: {json.dumps({**identity, 'choices': [choice]})}\n\n"
            else:
                yield "data: [DONE]\n\n"
        finally:  # also when Starlette cancels the stream because the client disconnected
            cancelled.set()

    async def inspect(self, request: Request) -> Response:
        body = parse(InspectRequest, await _body(request, self.max_request_bytes))
        work = lambda: self.engine.inspect(body.prompt, body.top_k)  # noqa: E731
        return JSONResponse(await self._run(request, work, threading.Event()))

    async def tokenizer_info(self, _request: Request) -> Response:
        tokenizer = self.engine.tokenizer
        return JSONResponse(
            {
                "eos_token": tokenizer.eos_token,
                "bos_token": tokenizer.bos_token,
                "pad_token": tokenizer.pad_token,
                "model_max_length": self.engine.block_size,
                "vocab_size": int(self.engine.model.config.vocab_size),
            }
        )

    async def tokenize(self, request: Request) -> Response:
        body = parse(TokenizeRequest, await _body(request, self.max_request_bytes))
        tokens = [int(i) for i in self.engine.tokenizer.encode(body.prompt)]
        return JSONResponse({"tokens": tokens, "count": len(tokens), "max_model_len": self.engine.block_size})

    async def detokenize(self, request: Request) -> Response:
        body = parse(DetokenizeRequest, await _body(request, self.max_request_bytes))
        self.engine.prompts(body.tokens or [0])  # the same id checks as a prompt's
        return JSONResponse({"prompt": self.engine.tokenizer.decode(body.tokens, skip_special_tokens=False)})
