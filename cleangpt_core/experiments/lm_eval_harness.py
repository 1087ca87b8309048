"""cleanGPT checkpoints as an EleutherAI lm-evaluation-harness model: ``lm-eval ... --model cleangpt``.

`CleanGPTLM` implements lm-eval's model interface for any checkpoint of any architecture: batched
``loglikelihood`` (each batch one forward pass), ``loglikelihood_rolling`` and ``generate_until`` (batched
left-padded decoding with the key/value cache). It is registered in lm-eval's own model registry under the
name ``cleangpt`` when this module is imported, and through the ``lm_eval.models`` entry point where the
installed lm-eval discovers plugins; ``cleangpt lm-eval RUN --tasks ...`` runs lm-eval's ``simple_evaluate``
with it. Needs ``pip install "cleangpt-core[eval]"``.
"""

from __future__ import annotations

import difflib
import os
import subprocess
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from lm_eval import evaluator
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from lm_eval.evaluator import simple_evaluate
from lm_eval.loggers.utils import get_commit_from_path
from lm_eval.tasks import TaskManager
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window, make_table

from cleangpt_core.distributed.devices import choose_device
from cleangpt_core.errors import ConfigError
from cleangpt_core.inference.generation import batch_generate
from cleangpt_core.inference.sampling_strategies import combined_sampling, greedy_sampling
from cleangpt_core.model.base import takes_final_label
from cleangpt_core.model.serialization import load_model, resolve_checkpoint
from cleangpt_core.tokenizers import from_pretrained

DEFAULT_MAX_GEN_TOKS = 256  # lm-eval's own default for generate_until


@register_model("cleangpt")
class CleanGPTLM(TemplateLM):
    """An lm-eval model backed by a cleanGPT checkpoint (``pretrained``: a checkpoint or run directory)."""

    def __init__(self, pretrained: str, device: str = "auto", batch_size: int | str = 8, **_ignored: Any) -> None:
        super().__init__()
        checkpoint = resolve_checkpoint(pretrained)
        self._device = choose_device(device)
        self.model = load_model(checkpoint, map_location=self._device).eval()
        self.tokenizer = from_pretrained(checkpoint / "tokenizer")
        if self.tokenizer.eos_token_id is None:
            raise ConfigError(f"{checkpoint}'s tokenizer has no EOS token, which lm-eval needs as a prefix token")
        # lm-eval passes "auto" for batch sizes it should search; a fixed size serves every model here
        self.batch_size = int(batch_size) if str(batch_size).isdigit() else 8
        self.block_size = self.model.config.block_size

    # -- what TemplateLM needs ------------------------------------------------------------------------

    @property
    def eot_token_id(self) -> int:
        """The end-of-text id: the prefix of a context-free continuation or of a rolling window."""
        return self.tokenizer.eos_token_id

    @property
    def max_length(self) -> int:
        """The longest input the model reads."""
        return self.block_size

    @property
    def device(self) -> torch.device:
        """Where the model runs."""
        return self._device

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs: Any) -> list[int]:
        """Token ids of `string` (cleanGPT tokenizers add no special tokens)."""
        return [int(i) for i in self.tokenizer.encode(string)]

    def tok_decode(self, tokens: Iterable[int], **kwargs: Any) -> str:
        """Text of `tokens`."""
        return self.tokenizer.decode(list(tokens))

    # -- scoring --------------------------------------------------------------------------------------

    def _loglikelihood_tokens(
        self, requests: list[tuple[tuple[str, str], list[int], list[int]]], disable_tqdm: bool = False, **_: Any
    ) -> list[tuple[float, bool]]:
        """Log-probability of each continuation after its context, and whether greedy decoding gives it.

        The context is cut from the left to fit the model. Requests are scored longest first, a batch at a
        time; right padding leaves the real positions unchanged in a causal model, so no mask is needed.
        """
        inputs = []
        for _, context, continuation in requests:
            whole = (context + continuation)[-(self.block_size + 1) :]
            scored = min(len(continuation), len(whole) - 1)  # a continuation longer than the context window: its tail
            inputs.append((whole[:-1], whole[len(whole) - scored :]))
        order = sorted(range(len(inputs)), key=lambda index: -len(inputs[index][0]))
        results: list[tuple[float, bool]] = [(0.0, False)] * len(inputs)
        for first in range(0, len(order), self.batch_size):
            chosen = order[first : first + self.batch_size]
            width = max(len(inputs[index][0]) for index in chosen)
            batch = torch.zeros((len(chosen), width), dtype=torch.long)
            for row, index in enumerate(chosen):
                tokens = inputs[index][0]
                batch[row, : len(tokens)] = torch.tensor(tokens)
            with torch.no_grad():
                log_probs = F.log_softmax(self.model(input_ids=batch.to(self.device))["logits"].float(), dim=-1)
            for row, index in enumerate(chosen):
                tokens, targets = inputs[index]
                # the logits at position i predict token i + 1: the last len(targets) inputs predict the targets
                scored = log_probs[row, len(tokens) - len(targets) : len(tokens)]
                target = torch.tensor(targets, device=scored.device)
                log_likelihood = scored.gather(-1, target[:, None]).sum().item()
                results[index] = (log_likelihood, bool((scored.argmax(-1) == target).all()))
        return results

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        """Log-likelihood of whole texts, every token scored once, the first after the end-of-text token.

        The windows are those ``cleangpt evaluate`` scores, so per token the two agree: block_size inputs
        scoring as many tokens for a model that takes a final label (its last position was trained), else
        block_size - 1.
        """
        scored = self.block_size if takes_final_label(self.model) else self.block_size - 1
        windows, owners = [], []
        for owner, (text,) in enumerate(request.args for request in requests):
            rolling = get_rolling_token_windows(
                token_list=self.tok_encode(text),
                prefix_token=self.eot_token_id,
                max_seq_len=scored,
                context_len=1,
            )
            for context, continuation in map(make_disjoint_window, rolling):
                windows.append(((text, ""), context, continuation))
                owners.append(owner)
        totals = [0.0] * len(requests)
        for owner, (log_likelihood, _) in zip(owners, self._loglikelihood_tokens(windows), strict=True):
            totals[owner] += log_likelihood
        return totals

    # -- generation -----------------------------------------------------------------------------------

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        """Continue each context until one of its stop strings (or EOS, or max_gen_toks), in batches.

        Requests with the same generation settings are decoded together as one left-padded batch with the
        key/value cache; ``do_sample`` false (lm-eval's default) decodes greedily.
        """
        groups: dict[str, list[int]] = {}
        for index, request in enumerate(requests):
            groups.setdefault(repr(sorted(request.args[1].items())), []).append(index)
        results = [""] * len(requests)
        for indices in groups.values():
            settings = dict(requests[indices[0]].args[1])
            until = settings.pop("until", None) or []
            until = [until] if isinstance(until, str) else list(until)
            max_new_tokens = int(settings.pop("max_gen_toks", DEFAULT_MAX_GEN_TOKS))
            sampler = _sampler(settings)
            for first in range(0, len(indices), self.batch_size):
                chosen = indices[first : first + self.batch_size]
                outputs = batch_generate(
                    self.model,
                    self.tokenizer,
                    [requests[index].args[0] for index in chosen],
                    self.device,
                    max_new_tokens=max_new_tokens,
                    sampler=sampler,
                )
                for index, output in zip(chosen, outputs, strict=True):
                    results[index] = _cut_at(output["completion"], until)
        return results


def _sampler(settings: dict[str, Any]) -> Any:
    if not settings.get("do_sample") or not settings.get("temperature", 1.0):
        return greedy_sampling
    options = {key: settings[key] for key in ("temperature", "top_k", "top_p") if settings.get(key) is not None}

    def sample(logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return combined_sampling(logits, generator=generator, **options)

    return sample


def _cut_at(text: str, until: list[str]) -> str:
    """`text` up to the first of the stop strings."""
    for stop in until:
        if stop:
            text = text.split(stop, 1)[0]
    return text


def evaluate_tasks(
    checkpoint: str | Path,
    tasks: list[str],
    *,
    include_path: str | Path | None = None,
    num_fewshot: int | None = None,
    limit: float | None = None,
    batch_size: int = 8,
    device: str = "auto",
) -> tuple[dict[str, Any], str]:
    """Run lm-eval's ``simple_evaluate`` on a checkpoint; return its results and lm-eval's table of them.

    An unknown task name fails before the model loads, with the names lm-eval knows that come closest.
    """
    task_manager = TaskManager(include_path=str(include_path) if include_path is not None else None)
    unknown = [name for name in tasks if name not in task_manager.all_tasks]
    if unknown:
        hints = {name: difflib.get_close_matches(name, task_manager.all_tasks, n=3) for name in unknown}
        described = "; ".join(
            f"{name!r}" + (f" (did you mean {', '.join(map(repr, close))}?)" if close else "")
            for name, close in hints.items()
        )
        raise ConfigError(f"lm-eval knows no task {described}; define your own with --include-path DIR")
    model = CleanGPTLM(pretrained=str(checkpoint), device=device, batch_size=batch_size)
    with _git_errors_kept_quiet():
        results = simple_evaluate(
            model=model,
            tasks=tasks,
            num_fewshot=num_fewshot,
            limit=limit,
            task_manager=task_manager,
            log_samples=False,
        )
    return results, make_table(results)


def _git_commit_hash() -> str | None:
    """lm-eval's ``get_git_commit_hash`` (the commit of the working folder, recorded with the results) with git's
    stderr kept from the terminal: lm-eval lets ``git describe`` write to it, so outside a checkout every
    evaluation printed "fatal: not a git repository" (EleutherAI/lm-evaluation-harness#1691)."""
    try:
        return subprocess.check_output(["git", "describe", "--always"], stderr=subprocess.DEVNULL).strip().decode()
    except (subprocess.CalledProcessError, FileNotFoundError):  # not a checkout, or no git: as lm-eval falls back
        return get_commit_from_path(os.getcwd())


@contextmanager
def _git_errors_kept_quiet() -> Iterator[None]:
    """`_git_commit_hash` in place of lm-eval's for the length of one evaluation (`simple_evaluate` calls the
    name its module imported), so nothing outside cleanGPT's own evaluations changes."""
    original = evaluator.get_git_commit_hash
    evaluator.get_git_commit_hash = _git_commit_hash
    try:
        yield
    finally:
        evaluator.get_git_commit_hash = original
