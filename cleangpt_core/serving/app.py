"""The HTTP application: OpenAI's completions and chat completions APIs, an inspection endpoint, tokenizer
endpoints and the playground.

Built on Starlette (the ASGI toolkit FastAPI is made of) and run by uvicorn. FastAPI would add request
validation and OpenAPI pages, but its validation answers 422 in its own shape, while OpenAI's clients
expect a 400 with ``error.param``; so bodies are validated here with pydantic (`schemas.parse`), and
Starlette gives the rest: routing, streaming responses, static files.

Model work runs on a pool of worker threads (`Engine` makes them take turns at the model); the event loop
only moves bytes, so it always notices a client that disconnects and stops that request's generation.
Every answer that is not a success is OpenAI's error object, whatever refused it: a route, Starlette's
routing (404, 405), the guard in front (`guard.py`: 403) or an unexpected fault (500).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.staticfiles import StaticFiles

from cleangpt_core.serving.engine import ChoiceResult, ClientGoneError, Engine, Piece
from cleangpt_core.serving.guard import RequestGuard
from cleangpt_core.serving.schemas import (
    ChatRequest,
    CompletionRequest,
    DetokenizeRequest,
    InspectRequest,
    RequestError,
    TokenizeRequest,
    parse,
)

DEFAULT_MAX_REQUEST_BYTES = 1 << 20
DEFAULT_MAX_CONCURRENT = 16  # requests being served at once
DEFAULT_MAX_WAITING = 64  # requests waiting for one of those places; more are refused with a 429
JSON_TYPE = "application/json"


def _error(error: RequestError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


async def _http_error(request: Request, error: Exception) -> Response:
    """Starlette's own refusals (no such route: 404, wrong method: 405) as OpenAI's error object."""
    assert isinstance(error, HTTPException)
    if error.status_code == 404:
        message = f"there is nothing at {request.url.path}: the API is under /v1 (GET /v1/models lists the model)"
    elif error.status_code == 405:
        allowed = (error.headers or {}).get("Allow", "")
        message = f"{request.method} is not allowed on {request.url.path}; it takes {allowed}"
    else:
        message = error.detail
    return _error(RequestError(message, status=error.status_code, headers=error.headers))


async def _server_error(_request: Request, _error_: Exception) -> Response:
    """An unexpected fault: the traceback goes to the server's log (uvicorn prints it), the client gets JSON."""
    return _error(RequestError("the server failed on this request; its log says why", status=500))


def _json_bytes(value: Any) -> bytes:
    """`value` as compact JSON, encoded list by list rather than in one call to the C encoder.

    A single `json.dumps` of a large payload (an inspection's attention weights) holds the GIL until it is
    done, stalling the event loop even from a worker thread; between the pieces here other threads run.
    """

    def pieces(item: Any) -> Iterator[str]:
        if isinstance(item, dict):
            yield "{"
            for number, (key, inner) in enumerate(item.items()):
                yield ("," if number else "") + json.dumps(str(key), ensure_ascii=False) + ":"
                yield from pieces(inner)
            yield "}"
        elif isinstance(item, list | tuple) and any(isinstance(inner, list | tuple | dict) for inner in item):
            yield "["
            for number, inner in enumerate(item):
                if number:
                    yield ","
                yield from pieces(inner)
            yield "]"
        else:
            yield json.dumps(item, ensure_ascii=False, allow_nan=False, separators=(",", ":"))

    return "".join(pieces(value)).encode()


async def _body(request: Request, limit: int) -> Any:
    """The request's JSON body, refused past `limit` bytes, when it is not JSON or when JSON cannot be read."""
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
    except RecursionError:
        raise RequestError("the request body nests arrays or objects too deeply to read: flatten it") from None
    except ValueError as error:  # Python's limit on the digits of an integer it converts
        reason = str(error).split(";")[0]
        raise RequestError(f"the request body holds a number this server does not read ({reason})") from None


async def _until_disconnected(request: Request) -> None:
    """Return when the client closes its connection (the body has been read already)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _identity(prefix: str, kind: str, model: str) -> dict[str, Any]:
    return {"id": f"{prefix}-{uuid.uuid4().hex}", "object": kind, "created": int(time.time()), "model": model}


def _candidates(body: CompletionRequest) -> int:
    """Choices generated per prompt: `best_of` where it asks for more than the `n` returned."""
    return max(body.best_of or body.n, body.n)


def _choices(body: CompletionRequest, prompts: list[list[int]]) -> list[tuple[int, list[int], int | None]]:
    """(index, prompt ids, seed) of every choice to generate, in OpenAI's order; choice i draws with seed + i."""
    per_prompt = _candidates(body)
    return [
        (number * per_prompt + i, ids, None if body.seed is None else body.seed + i)
        for number, ids in enumerate(prompts)
        for i in range(per_prompt)
    ]


def _best(body: CompletionRequest, results: list[ChoiceResult]) -> list[ChoiceResult]:
    """Of each prompt's `best_of` choices, the `n` with the highest log-probability per token, numbered anew."""
    per_prompt = _candidates(body)
    if per_prompt == body.n:
        return results
    best = []
    for number in range(len(results) // per_prompt):
        group = results[number * per_prompt : (number + 1) * per_prompt]
        ranked = sorted(group, key=lambda r: -(r.score or 0.0))[: body.n]  # stable: ties keep the lower seed
        best += [replace(r, index=number * body.n + i) for i, r in enumerate(ranked)]
    return best


def _usage(body: CompletionRequest, results: list[ChoiceResult]) -> dict[str, int]:
    """OpenAI's token counts: each prompt once, and every token generated (best_of's unreturned choices too)."""
    prompt_tokens = sum(r.prompt_tokens for r in results if r.index % _candidates(body) == 0)
    completion_tokens = sum(r.completion_tokens for r in results)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _text_choice(piece: Piece, _first: bool) -> dict[str, Any]:
    """A completions choice (whole, or a streamed chunk's)."""
    return {"index": piece.index, "text": piece.text, "logprobs": piece.logprobs, "finish_reason": piece.finish_reason}


def _chat_logprobs(log: dict[str, list[Any]] | None) -> dict[str, Any] | None:
    """The completions `logprobs` object as chat completions shape it: one entry per token, with its bytes."""
    if log is None:
        return None

    def entry(token: str, logprob: float | None) -> dict[str, Any]:
        return {"token": token, "logprob": logprob, "bytes": list(token.encode())}

    return {
        "content": [
            {**entry(token, logprob), "top_logprobs": [entry(t, v) for t, v in (top or {}).items()]}
            for token, logprob, top in zip(log["tokens"], log["token_logprobs"], log["top_logprobs"], strict=True)
        ]
    }


def _delta(piece: Piece, first: bool) -> dict[str, Any]:
    """A chat completion chunk's choice: the role comes with a choice's first piece, as OpenAI sends it."""
    delta: dict[str, Any] = {"role": "assistant", "content": piece.text} if first else {"content": piece.text}
    if piece.finish_reason is not None and not piece.text and not first:
        delta = {}
    logprobs = _chat_logprobs(piece.logprobs)
    return {"index": piece.index, "delta": delta, "logprobs": logprobs, "finish_reason": piece.finish_reason}


class Server:
    """The routes, around one `Engine`.

    `host` is the address the server is bound to: requests must name it (see `guard.py`), and
    `allowed_origins` are the web pages allowed to call the API from elsewhere ("*": any).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        api_key: str | None = None,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        max_concurrent: int = DEFAULT_MAX_CONCURRENT,
        max_waiting: int = DEFAULT_MAX_WAITING,
        host: str = "127.0.0.1",
        allowed_origins: tuple[str, ...] = (),
    ) -> None:
        self.engine = engine
        self.api_key = api_key
        self.max_request_bytes = max_request_bytes
        self.workers = ThreadPoolExecutor(max_concurrent, thread_name_prefix="cleangpt-serve")
        self.capacity = max_concurrent + max_waiting
        self.busy = 0  # requests given to the workers and not finished (read and written on the event loop only)
        self.host = host
        self.allowed_origins = allowed_origins
        self.created = int(time.time())

    def app(self) -> Starlette:
        api = [
            ("/v1/models", self.models, "GET"),
            ("/v1/completions", self.completions, "POST"),
            ("/v1/chat/completions", self.chat_completions, "POST"),
            ("/v1/inspect", self.inspect, "POST"),
            ("/tokenizer_info", self.tokenizer_info, "GET"),
            ("/tokenize", self.tokenize, "POST"),
            ("/detokenize", self.detokenize, "POST"),
        ]
        routes = [Route(path, self._guarded(handler), methods=[method]) for path, handler, method in api]
        routes.append(Route("/favicon.ico", self.favicon, methods=["GET"]))
        app = Starlette(
            routes=routes,
            middleware=[Middleware(RequestGuard, bound=self.host, allowed_origins=self.allowed_origins)],
            exception_handlers={
                RequestError: self._request_error,
                HTTPException: _http_error,
                Exception: _server_error,
            },
            lifespan=self._lifespan,
        )
        # The playground's files answer every path no route takes. As the router's default rather than a
        # catch-all mount, a known path with the wrong method stays a 405 (a mount would turn it into a 404).
        static = resources.files("cleangpt_core.serving") / "static"
        app.router.default = StaticFiles(directory=str(static), html=True)
        return app

    @staticmethod
    async def _request_error(_request: Request, error: Exception) -> Response:
        assert isinstance(error, RequestError)
        return _error(error)

    @contextlib.asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        """On shutdown, stop waiting requests; running ones end with their clients' connections."""
        yield
        self.workers.shutdown(wait=False, cancel_futures=True)

    def _guarded(self, handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        """The handler behind the bearer-token check (when the server has a key) and, for a POST, a JSON body."""

        async def guarded(request: Request) -> Response:
            if self.api_key is not None:
                given = request.headers.get("authorization", "")
                if not hmac.compare_digest(given.encode(), f"Bearer {self.api_key}".encode()):
                    raise RequestError(
                        "missing or wrong API key: send 'Authorization: Bearer KEY'", status=401, code="invalid_api_key"
                    )
            if request.method == "POST":
                given_type = request.headers.get("content-type", "")
                if given_type.split(";")[0].strip().lower() != JSON_TYPE:
                    raise RequestError(
                        f"the body's Content-Type is {given_type or 'not given'}; send JSON as "
                        f"'Content-Type: {JSON_TYPE}'",
                        status=415,
                        code="unsupported_media_type",
                    )
            return await handler(request)

        return guarded

    def _submit(self, work: Callable[[], Any]) -> asyncio.Future[Any]:
        """`work` on a worker thread, or a 429 when `capacity` requests are being served or waiting already."""
        if self.busy >= self.capacity:
            raise RequestError(
                f"the server is busy with {self.busy} requests, the most it takes at once: try again shortly",
                status=429,
                code="rate_limit_exceeded",
            )
        self.busy += 1
        job = asyncio.get_running_loop().run_in_executor(self.workers, work)
        job.add_done_callback(lambda _job: setattr(self, "busy", self.busy - 1))  # runs on the event loop
        return job

    async def _run(self, request: Request, work: Callable[[], Any], cancelled: threading.Event) -> Any:
        """`work` on a worker thread; `cancelled` is set if the client disconnects first, which stops it."""
        job = self._submit(work)
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
        identity = _identity("cmpl", "text_completion", self.engine.name)
        if body.stream:
            return self._stream(body, prompts, stops, identity, _text_choice)
        results = await self._complete(request, body, prompts, stops)
        if results is None:  # the client is gone: nobody reads this
            return Response(status_code=499)
        best = _best(body, results)
        choices = [_text_choice(Piece(r.index, r.text, r.logprobs, r.finish_reason), True) for r in best]
        return JSONResponse({**identity, "choices": choices, "usage": _usage(body, results)})

    async def chat_completions(self, request: Request) -> Response:
        body = parse(ChatRequest, await _body(request, self.max_request_bytes))
        if body.top_logprobs is not None and not body.logprobs:
            raise RequestError("'top_logprobs' needs 'logprobs': true", param="top_logprobs")
        template = self.engine.chat_template
        prompt = template.render(body.messages, self.engine.tokenizer)
        try:
            encoded = self.engine.encode(prompt, "messages")
        except RequestError as error:  # the template's own text may be what the vocabulary lacks
            raise RequestError(
                f"the prompt that {template.origin} makes of 'messages' cannot be tokenized: {error.message} "
                "(offsets count in that prompt; cleangpt serve --chat-template FILE takes a template whose text "
                "the vocabulary covers)",
                param="messages",
                code=error.code,
            ) from None
        ids = self.engine.prompts([encoded])[0]
        given = next((m for m in (body.max_completion_tokens, body.max_tokens) if m is not None), None)
        sampling = body.model_dump(exclude={"messages", "max_tokens", "max_completion_tokens", "top_logprobs"})
        sampling["logprobs"] = (body.top_logprobs or 0) if body.logprobs else None
        sampling["max_tokens"] = given if given is not None else self.engine.room_after(ids)
        completion = CompletionRequest.model_validate({**sampling, "prompt": ids})
        stops = self.engine.check(completion)
        identity = _identity("chatcmpl", "chat.completion", self.engine.name)
        if body.stream:
            return self._stream(completion, [ids], stops, {**identity, "object": "chat.completion.chunk"}, _delta)
        results = await self._complete(request, completion, [ids], stops)
        if results is None:
            return Response(status_code=499)
        choices = [
            {
                "index": r.index,
                "message": {"role": "assistant", "content": r.text},
                "logprobs": _chat_logprobs(r.logprobs),
                "finish_reason": r.finish_reason,
            }
            for r in results
        ]
        return JSONResponse({**identity, "choices": choices, "usage": _usage(completion, results)})

    async def _complete(
        self, request: Request, body: CompletionRequest, prompts: list[list[int]], stops: list[str]
    ) -> list[ChoiceResult] | None:
        """Every choice of every prompt, generated on a worker; None if the client went away meanwhile."""
        cancelled = threading.Event()

        def work() -> list[ChoiceResult]:
            return [
                self.engine.complete(body, index, ids, stops, None, cancelled.is_set, seed)
                for index, ids, seed in _choices(body, prompts)
            ]

        try:
            return await self._run(request, work, cancelled)
        except ClientGoneError:
            return None

    def _stream(
        self,
        body: CompletionRequest,
        prompts: list[list[int]],
        stops: list[str],
        identity: dict[str, Any],
        shape: Callable[[Piece, bool], dict[str, Any]],
    ) -> StreamingResponse:
        """Server-sent events: one chunk per piece of text (`shape` writes its choice), then ``[DONE]``."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Piece | BaseException | None] = asyncio.Queue()
        cancelled = threading.Event()

        def emit(piece: Piece) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, piece)

        def work() -> None:
            try:
                for index, ids, seed in _choices(body, prompts):
                    self.engine.complete(body, index, ids, stops, emit, cancelled.is_set, seed)
                loop.call_soon_threadsafe(queue.put_nowait, None)
            except BaseException as error:  # handed to the event loop, which ends the stream
                loop.call_soon_threadsafe(queue.put_nowait, error)

        async def events() -> AsyncIterator[str]:
            started: set[int] = set()
            try:
                while (item := await queue.get()) is not None:
                    if isinstance(item, BaseException):
                        error = (
                            item
                            if isinstance(item, RequestError)
                            else RequestError("generation failed on the server; its log says why", status=500)
                        )
                        yield f"data: {json.dumps(error.body())}\n\n"
                        break
                    first = item.index not in started
                    started.add(item.index)
                    yield f"data: {json.dumps({**identity, 'choices': [shape(item, first)]})}\n\n"
                else:
                    yield "data: [DONE]\n\n"
            finally:  # also when Starlette cancels the stream because the client disconnected
                cancelled.set()

        self._submit(work)  # before the response starts, so that a full server answers 429, not a broken stream
        return StreamingResponse(events(), media_type="text/event-stream")

    async def inspect(self, request: Request) -> Response:
        body = parse(InspectRequest, await _body(request, self.max_request_bytes))
        ids = self.engine.inspectable(body.prompt)
        # encoded on the worker too: an inspection's JSON runs to megabytes
        work = lambda: _json_bytes(self.engine.inspect(body.prompt, ids, body.top_k))  # noqa: E731
        return Response(await self._run(request, work, threading.Event()), media_type=JSON_TYPE)

    async def favicon(self, _request: Request) -> Response:
        """No icon (browsers ask for one on every page load): an empty answer rather than a 404 in the log."""
        return Response(status_code=204)

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
        if body.model is not None:
            self.engine.check_model(body.model)
        tokens = self.engine.encode(body.prompt)
        return JSONResponse({"tokens": tokens, "count": len(tokens), "max_model_len": self.engine.block_size})

    async def detokenize(self, request: Request) -> Response:
        body = parse(DetokenizeRequest, await _body(request, self.max_request_bytes))
        self.engine.prompts(body.tokens or [0])  # the same id checks as a prompt's
        return JSONResponse({"prompt": self.engine.tokenizer.decode(body.tokens, skip_special_tokens=False)})
