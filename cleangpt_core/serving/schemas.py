"""The request bodies the server accepts, as OpenAI's completions API defines them, and its error bodies.

A body is validated whole before any work: an unknown field, a wrong type or a value out of range is a
400 whose ``error.param`` names the field, as OpenAI's API answers (its clients show that message).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

ERROR_TYPES = {  # OpenAI's `error.type` for each status; any other 4xx is an invalid request
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "server_error",
}


class RequestError(Exception):
    """A request the server refuses: the HTTP status, the message, and the field it is about (OpenAI's `param`).

    `headers` go with the response (a 405's ``Allow``).
    """

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        status: int = 400,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.status = status
        self.code = code
        self.headers = headers

    def body(self) -> dict[str, Any]:
        """OpenAI's error object."""
        kind = ERROR_TYPES.get(self.status, "invalid_request_error")
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False)


Prompt = str | list[str] | list[int] | list[list[int]]
MAX_CHOICES = 16  # `n`: choices per prompt


class _Sampling(_Strict):
    """The fields completions and chat completions share: how to draw, how many, when to stop.

    The penalties and `logit_bias` are logit processors (`inference.logit_processors`); each left at its
    neutral value changes nothing, so such a request gets exactly `cleangpt generate`'s text.
    """

    model: str
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: int = Field(1, ge=1, le=MAX_CHOICES)  # choice i of a seeded request draws with seed + i
    stream: bool = False
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=0, lt=2**63 - MAX_CHOICES)
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    logit_bias: dict[str, float] | None = None  # token id (as a string, as JSON keys are) -> -100..100
    user: str | None = None  # accepted for compatibility, not used


class CompletionRequest(_Sampling):
    """``POST /v1/completions``: the fields of OpenAI's (legacy) completions API that a local model can honour."""

    prompt: Prompt
    max_tokens: int = Field(16, ge=0)
    logprobs: int | None = Field(None, ge=0, le=20)
    echo: bool = False
    best_of: int | None = Field(None, ge=1, le=MAX_CHOICES)  # choices generated, of which the n best are returned
    suffix: str | None = None  # only empty: a causal model cannot fill in before a suffix


class ChatMessage(_Strict):
    """One turn of a conversation; `content` as a string or OpenAI's list of text parts."""

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[dict[str, Any]]
    name: str | None = None


class ChatRequest(_Sampling):
    """``POST /v1/chat/completions``: the conversation is rendered by a chat template, then completed."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=0)  # default: the rest of the model's context
    max_completion_tokens: int | None = Field(None, ge=0)  # OpenAI's newer name for max_tokens
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)  # only with logprobs


class InspectRequest(_Strict):
    """``POST /v1/inspect``: what `cleangpt inspect` computes, for one prompt."""

    prompt: str = Field(min_length=1)
    top_k: int = Field(5, ge=1, le=20)


class TokenizeRequest(_Strict):
    """``POST /tokenize`` (vLLM's endpoint, which lm-eval's remote tokenizer calls, naming the model)."""

    prompt: str
    model: str | None = None
    add_special_tokens: bool = False


class DetokenizeRequest(_Strict):
    """``POST /detokenize`` (vLLM's endpoint)."""

    tokens: list[int]


def _refuse_lone_surrogates(body: dict[str, Any]) -> None:
    """A 400 naming the field, the character and its offset where a string holds half a UTF-16 pair.

    JSON may spell one (``"\\ud800"``) and Python decodes it, but it is no character: no tokenizer can
    encode it and no answer quoting it can be written as UTF-8.
    """
    pending: list[tuple[str, Any]] = list(body.items())
    while pending:  # a loop, not recursion: the body may nest as deep as the JSON parser allows
        path, value = pending.pop()
        if isinstance(value, dict):
            pending.extend((f"{path}.{key}", inner) for key, inner in value.items())
        elif isinstance(value, list):
            pending.extend((f"{path}.{index}", inner) for index, inner in enumerate(value))
        elif isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as error:
                field = path.split(".")[0]
                raise RequestError(
                    f"{field!r} holds a lone surrogate {value[error.start]!r} at offset {error.start}, which is "
                    "not a character: send the pair it belongs to, or remove it",
                    param=field,
                ) from None


def parse(schema: type[BaseModel], body: Any) -> Any:
    """`body` (decoded JSON) validated by `schema`, or a `RequestError` naming the first bad field."""
    if not isinstance(body, dict):
        raise RequestError(f"the request body must be a JSON object, not {type(body).__name__}")
    _refuse_lone_surrogates(body)
    try:
        return schema.model_validate(body)
    except ValidationError as error:
        first = error.errors()[0]
        # union members add their type to the location (prompt.str, prompt.list[int]): keep the field's path
        location = [str(part) for part in first["loc"] if not str(part).startswith(("str", "list[", "int"))]
        field = ".".join(location) or None
        if first["type"] == "extra_forbidden":
            raise RequestError(f"unknown field {field!r}: this server does not take it", param=field) from None
        if first["type"] == "missing":
            raise RequestError(f"{field!r} is required", param=field) from None
        given = first.get("input")
        shown = given if isinstance(given, int | float | bool) or given is None else type(given).__name__
        raise RequestError(f"{field!r}: {first['msg']} (got {shown})", param=field) from None
