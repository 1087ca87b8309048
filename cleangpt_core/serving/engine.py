"""The server's model engine: completions (streamed piece by piece, with stop strings, echo and log-probabilities)
and inspections, for many requests at once on one model.

Requests run on worker threads and take turns at the model one decoding step at a time, first come first
served (`TurnTaking`): each keeps its own key/value cache, sampler and seeded generator, so nothing of one
request reaches another, and a request's tokens are exactly those `cleangpt generate` draws with the same
seed (the same engine, `generate_tokens`, with the same sampler). Turns are per token, so eight streams
advance together instead of one after another. A request whose client went away is stopped at its next
step.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cleangpt_core.errors import InspectionError, TokenizerError, UnknownTokenError
from cleangpt_core.inference.decoding import DEFAULT_SAMPLER, bind_sampler, generate_tokens
from cleangpt_core.inference.logit_processors import LogitProcessor, Penalties, logit_bias, with_processors
from cleangpt_core.inspection import inspect_ids
from cleangpt_core.serving.chat import PLAIN, ChatTemplate
from cleangpt_core.serving.schemas import CompletionRequest, RequestError

MAX_STOP_STRINGS = 4  # as OpenAI's API
MAX_PROMPTS = 64  # prompts in one request
# An inspection returns every attention weight: tokens^2 x layers x heads numbers, ~20 bytes each in JSON.
# Four million weights are ~80 MB of JSON, a 450-token prompt on GPT-2 small.
DEFAULT_MAX_INSPECT_WEIGHTS = 4_000_000


class ClientGoneError(Exception):
    """The request's client disconnected: its generation stops at the next step."""


class _StopStringError(Exception):
    """A stop string appeared in the text: generation ends here."""


class TurnTaking:
    """A fair lock: threads get the model in the order they asked for it (FIFO), one at a time.

    A generating thread gives its turn back after every token and queues again, so concurrent requests
    are interleaved token by token rather than served one after another.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._queue: deque[object] = deque()

    def acquire(self) -> None:
        ticket = object()
        with self._condition:
            self._queue.append(ticket)
            self._condition.wait_for(lambda: self._queue[0] is ticket)

    def release(self) -> None:
        with self._condition:
            self._queue.popleft()
            self._condition.notify_all()

    def take_turns(self) -> None:
        """Let every thread that is waiting go first, then continue."""
        self.release()
        self.acquire()

    def __enter__(self) -> TurnTaking:
        self.acquire()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()


@dataclass
class Piece:
    """New text of one choice, with the log-probabilities of the tokens it holds when they were asked for."""

    index: int
    text: str
    logprobs: dict[str, list[Any]] | None = None
    finish_reason: str | None = None


@dataclass
class ChoiceResult:
    """A finished choice: its whole text, log-probabilities, why it ended and its token counts."""

    index: int
    text: str
    logprobs: dict[str, list[Any]] | None
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    score: float | None = None  # mean log-probability per generated token, when best_of ranks the choices


@dataclass
class _LogprobLog:
    """OpenAI's completions `logprobs` object, filled token by token; `take` hands over what is new."""

    tokens: list[str] = field(default_factory=list)
    token_logprobs: list[float | None] = field(default_factory=list)
    top_logprobs: list[dict[str, float] | None] = field(default_factory=list)
    text_offset: list[int] = field(default_factory=list)
    taken: int = 0

    def add(self, token: str, logprob: float | None, top: dict[str, float] | None, offset: int) -> None:
        self.tokens.append(token)
        self.token_logprobs.append(logprob)
        self.top_logprobs.append(top)
        self.text_offset.append(offset)

    def take(self, upto: int | None = None) -> dict[str, list[Any]]:
        end = len(self.tokens) if upto is None else upto
        part = {
            name: getattr(self, name)[self.taken : end]
            for name in ("tokens", "token_logprobs", "top_logprobs", "text_offset")
        }
        self.taken = end
        return part

    def whole(self) -> dict[str, list[Any]]:
        return {name: getattr(self, name) for name in ("tokens", "token_logprobs", "top_logprobs", "text_offset")}


def _held_back(text: str, stops: list[str]) -> int:
    """How many characters at the end of `text` could still begin a stop string (so must not be sent yet)."""
    longest = 0
    for stop in stops:
        for length in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:length]):
                longest = length
                break
    return longest


class Engine:
    """One loaded model and tokenizer, served under `name` to any number of threads."""

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        name: str,
        *,
        max_tokens_limit: int,
        max_inspect_weights: int = DEFAULT_MAX_INSPECT_WEIGHTS,
        chat_template: ChatTemplate | None = None,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.max_tokens_limit = max_tokens_limit
        self.max_inspect_weights = max_inspect_weights
        self.chat_template = chat_template or PLAIN
        self.device = next(model.parameters()).device
        self.block_size = int(model.config.block_size)
        self.turns = TurnTaking()
        self.generated_tokens = 0  # since start, over all requests: a running total for monitoring

    # -- prompts -------------------------------------------------------------------------------------------

    def encode(self, text: str, param: str = "prompt") -> list[int]:
        """Token ids of `text`, the request's field `param`; text the tokenizer cannot encode is a 400 naming why."""
        try:
            return [int(i) for i in self.tokenizer.encode(text)]
        except UnknownTokenError as error:
            character = error.character or "?"
            raise RequestError(
                f"{param!r} holds the character {character!r} (U+{ord(character[0]):04X}) at offset "
                f"{error.position}, which is not in this model's vocabulary: remove or replace it",
                param=param,
                code="unknown_character",
            ) from None
        except TokenizerError as error:
            raise RequestError(f"{param!r} cannot be tokenized: {error}", param=param) from None

    def prompts(self, prompt: Any) -> list[list[int]]:
        """The request's prompts as token ids, each checked: not empty, ids in the vocabulary, fits the context."""
        if isinstance(prompt, str) or (isinstance(prompt, list) and prompt and isinstance(prompt[0], int)):
            prompt = [prompt]
        if not prompt:
            raise RequestError("'prompt' is empty: give a string, a list of strings or token ids", param="prompt")
        if len(prompt) > MAX_PROMPTS:
            raise RequestError(f"'prompt' holds {len(prompt)} prompts; at most {MAX_PROMPTS}", param="prompt")
        vocabulary = int(self.model.config.vocab_size)
        encoded = []
        for item in prompt:
            ids = self.encode(item) if isinstance(item, str) else list(item)
            if not ids:
                raise RequestError("a prompt encodes to no tokens: give a non-empty prompt", param="prompt")
            if any(not 0 <= i < vocabulary for i in ids):
                raise RequestError(f"'prompt' has a token id outside 0..{vocabulary - 1}", param="prompt")
            if len(ids) > self.block_size:
                raise RequestError(
                    f"this model's maximum context length is {self.block_size} tokens; the prompt has {len(ids)}",
                    param="prompt",
                    code="context_length_exceeded",
                )
            encoded.append(ids)
        return encoded

    def check_model(self, model: str) -> None:
        """A 404 naming the served model unless `model` is it."""
        if model != self.name:
            raise RequestError(
                f"the model {model!r} does not exist; this server serves {self.name!r}",
                param="model",
                status=404,
                code="model_not_found",
            )

    def room_after(self, ids: list[int]) -> int:
        """How many tokens fit after `ids` in the context (at least 1, at most max_tokens_limit): a chat's default."""
        return max(1, min(self.block_size - len(ids), self.max_tokens_limit))

    def check(self, request: CompletionRequest) -> list[str]:
        """Everything about `request` that can be wrong besides its prompt; returns its stop strings.

        A parameter this server cannot honour is refused only when set to something other than its neutral
        value, so clients that send every default work.
        """
        self.check_model(request.model)
        if request.max_tokens > self.max_tokens_limit:
            raise RequestError(
                f"'max_tokens' is {request.max_tokens}; this server allows at most {self.max_tokens_limit}",
                param="max_tokens",
            )
        if request.best_of is not None and request.best_of < request.n:
            raise RequestError(
                f"'best_of' is {request.best_of}, fewer than the {request.n} choices 'n' asks for", param="best_of"
            )
        if request.best_of is not None and request.best_of > request.n and request.stream:
            raise RequestError(
                "'best_of' above 'n' cannot be streamed: the best are known only at the end", param="best_of"
            )
        if request.suffix:
            raise RequestError(
                "'suffix' is not supported: a causal model writes after the prompt, never before a suffix",
                param="suffix",
            )
        vocabulary = int(self.model.config.vocab_size)
        for token, bias in (request.logit_bias or {}).items():
            if not token.isdigit() or int(token) >= vocabulary or not -100 <= bias <= 100:
                raise RequestError(
                    f"'logit_bias' maps {token!r} to {bias}: keys are token ids 0..{vocabulary - 1}, values "
                    "-100..100",
                    param="logit_bias",
                )
        stops = [request.stop] if isinstance(request.stop, str) else list(request.stop or [])
        if len(stops) > MAX_STOP_STRINGS or any(not stop for stop in stops):
            raise RequestError(f"'stop' takes up to {MAX_STOP_STRINGS} non-empty strings", param="stop")
        return stops

    def processors(self, request: CompletionRequest) -> tuple[list[LogitProcessor], Penalties | None]:
        """The logit processors `request` asks for (none at neutral values), and the penalties to feed tokens."""
        vocabulary = int(self.model.config.vocab_size)
        processors: list[LogitProcessor] = []
        if request.logit_bias:
            bias = {int(token): amount for token, amount in request.logit_bias.items()}
            processors.append(logit_bias(bias, vocabulary, self.device))
        penalties = None
        if request.presence_penalty or request.frequency_penalty:
            penalties = Penalties(
                vocabulary,
                presence=request.presence_penalty,
                frequency=request.frequency_penalty,
                device=self.device,
            )
            processors.append(penalties)
        return processors, penalties

    # -- log-probabilities ----------------------------------------------------------------------------------

    def _token(self, token_id: int) -> str:
        return self.tokenizer.decode([token_id], skip_special_tokens=False)

    def _top(self, log_probs: torch.Tensor, k: int) -> dict[str, float]:
        values, ids = log_probs.topk(k)
        return {self._token(int(i)): float(v) for v, i in zip(values, ids, strict=True)}

    @torch.inference_mode()
    def _prompt_logprobs(self, ids: list[int], k: int, log: _LogprobLog) -> None:
        """Each prompt token's log-probability given those before it (None for the first), as `echo` shows."""
        logits = self.model(torch.tensor([ids], device=self.device))["logits"][0].float()
        log_probs = F.log_softmax(logits, dim=-1)
        offset = 0
        for t, token_id in enumerate(ids):
            token = self._token(token_id)
            if t == 0:
                log.add(token, None, None, offset)
            else:
                log.add(token, float(log_probs[t - 1, token_id]), self._top(log_probs[t - 1], k) if k else {}, offset)
            offset += len(token)

    # -- completions ----------------------------------------------------------------------------------------

    def complete(
        self,
        request: CompletionRequest,
        index: int,
        ids: list[int],
        stops: list[str],
        emit: Callable[[Piece], None] | None,
        cancelled: Callable[[], bool],
        seed: int | None = None,
    ) -> ChoiceResult:
        """Generate one choice for prompt `ids`, sending each new piece of text to `emit` (streaming) as it comes.

        `seed` seeds this choice's generator (as `cleangpt generate --seed`); None draws unseeded. Runs on a
        worker thread and takes turns at the model with every other request.
        """
        want_logprobs = request.logprobs is not None
        want_score = (request.best_of or request.n) > request.n
        log = _LogprobLog() if want_logprobs else None
        score = 0.0
        top_k = min(request.logprobs or 0, int(self.model.config.vocab_size))
        prompt_text = self.tokenizer.decode(ids, skip_special_tokens=True)
        prefix = prompt_text if request.echo else ""
        options = {"temperature": request.temperature, "top_p": request.top_p if request.top_p < 1.0 else None}
        processors, penalties = self.processors(request)
        sampler = with_processors(bind_sampler(DEFAULT_SAMPLER, options), processors)
        generator = None
        if seed is not None:  # as `cleangpt generate --seed`: a fresh generator per choice
            generator = torch.Generator(device=self.device).manual_seed(seed)
        last_log_probs: list[torch.Tensor] = []

        def sample(logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
            if want_logprobs or want_score:
                last_log_probs[:] = [F.log_softmax(logits[0].float(), dim=-1)]
            return sampler(logits, generator=generator)

        generated: list[int] = []
        sent = 0  # characters of the completion already sent
        stopped_by_string = False
        completion = ""

        def send(text: str, finish: str | None = None) -> None:
            nonlocal prefix
            if emit is not None and (text or finish or (log is not None and log.taken < len(log.tokens))):
                emit(Piece(index, prefix + text, log.take() if log is not None else None, finish))
                prefix = ""

        def on_tokens(new: torch.Tensor) -> None:
            nonlocal sent, completion, stopped_by_string, score
            token_id = int(new[0, 0])
            generated.append(token_id)
            if want_score:
                score += float(last_log_probs[0][token_id])
            if penalties is not None:
                penalties.observe(token_id)
            self.generated_tokens += 1  # under the turn: one thread at a time
            text = self.tokenizer.decode(generated, skip_special_tokens=True)
            if log is not None:
                offset = len(prompt_text if request.echo else "") + len(completion)
                log_probs = last_log_probs[0]
                top = self._top(log_probs, top_k) if top_k else {}
                log.add(self._token(token_id), float(log_probs[token_id]), top, offset)
            cut = min((i for i in (text.find(stop, max(0, sent - len(stop))) for stop in stops) if i >= 0), default=-1)
            if cut >= 0:
                completion, stopped_by_string = text[:cut], True
                raise _StopStringError
            completion = text
            ready = len(text) if not text.endswith("\ufffd") else len(text.rstrip("\ufffd"))
            ready -= _held_back(text[:ready], stops)
            if ready > sent:
                send(text[sent:ready])
                sent = ready
            if cancelled():
                raise ClientGoneError
            self.turns.take_turns()

        with self.turns:
            if cancelled():
                raise ClientGoneError
            if log is not None and request.echo:
                self._prompt_logprobs(ids, top_k, log)
            with contextlib.suppress(_StopStringError):
                generate_tokens(
                    self.model,
                    torch.tensor([ids], device=self.device),
                    request.max_tokens,
                    sampler=sample,
                    eos_token_id=self.tokenizer.eos_token_id,
                    generator=generator,
                    on_tokens=on_tokens,
                )
        eos = self.tokenizer.eos_token_id
        finish = "stop" if stopped_by_string or (generated and generated[-1] == eos) else "length"
        send(completion[sent:], finish)
        return ChoiceResult(
            index=index,
            text=(prompt_text if request.echo else "") + completion,
            logprobs=log.whole() if log is not None else None,
            finish_reason=finish,
            prompt_tokens=len(ids),
            completion_tokens=len(generated),
            score=score / max(len(generated), 1) if want_score else None,
        )

    def inspectable(self, text: str) -> list[int]:
        """The ids of `text`, refused (400) when its inspection would carry more than `max_inspect_weights`."""
        ids = self.prompts(text)[0]
        config = self.model.config
        weights = len(ids) ** 2 * int(config.n_layer) * int(config.n_head)
        if weights > self.max_inspect_weights:
            most = int((self.max_inspect_weights / (int(config.n_layer) * int(config.n_head))) ** 0.5)
            raise RequestError(
                f"an inspection of these {len(ids)} tokens holds {len(ids)}^2 x {config.n_layer} layers x "
                f"{config.n_head} heads = {weights:,} attention weights; this server returns at most "
                f"{self.max_inspect_weights:,} (--max-inspect-weights): inspect at most {most} tokens",
                param="prompt",
                code="inspection_too_large",
            )
        return ids

    def inspect(self, text: str, ids: list[int], top_k: int) -> dict[str, Any]:
        """`cleangpt inspect`'s data for `text` (token ids `ids`, checked by `inspectable`), taking its turn."""
        with self.turns:
            try:
                return {"text": text, **inspect_ids(self.model, self.tokenizer, ids, top_k=top_k)}
            except InspectionError as error:  # an architecture with no logit lens, say
                raise RequestError(str(error), param="prompt") from None
