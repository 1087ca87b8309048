"""torch.compile takes every preset and every registered part in one graph: no graph breaks, the same loss.

A graph break splits the model into pieces compiled apart, run with Python in between: on a GPU, no fusion
across it and no CUDA graphs. `torch._dynamo.explain` counts them. The presets (Vanilla, Llama, SASP) are
checked as they are; the parts in models that together use every registered option of every kind (the
i-th model takes each kind's i-th option, wrapping around), so each part is compiled in some neighbourhood.
With activation checkpointing, as `prepare_model` applies it for a trainer, the model is still one graph
(one per block under FSDP2) with no break, alone, under DDP and under FSDP2.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch._dynamo.testing import CompileCounterWithBackend
from torch._dynamo.utils import counters
from two_ranks import on_two_ranks

from cleangpt_core.distributed.strategies import prepare_model
from cleangpt_core.model import get_model
from cleangpt_core.registry import get_registry
from cleangpt_core.testing.trainer import tiny_model

pytestmark = pytest.mark.slow  # each model is traced twice (explain, then compiled): about 5 s

SHAPE = {"vocab_size": 17, "n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 16, "dropout": 0.0}
KINDS = ("attention", "feedforward", "norm", "position", "residual")


def part_models() -> list[dict[str, str]]:
    """Part choices that together cover every registered option of every kind."""
    options = {kind: sorted(component.name for component in get_registry().components(kind)) for kind in KINDS}
    return [
        {kind: names[index % len(names)] for kind, names in options.items()}
        for index in range(max(map(len, options.values())))
    ]


CASES = [pytest.param("Vanilla", {}, id="Vanilla"), pytest.param("Llama", {}, id="Llama")]
CASES += [pytest.param("SASP", {}, id="SASP")]
CASES += [pytest.param("Llama", {"parametrization": "mup", "mup_base_width": 16}, id="Llama-mup")]  # m = 2
CASES += [pytest.param("Vanilla", parts, id="-".join(parts.values())) for parts in part_models()]


@pytest.mark.parametrize(("architecture", "parts"), CASES)
def test_the_model_compiles_into_one_graph_with_the_eager_loss(architecture, parts):
    torch.manual_seed(0)
    model = get_model(architecture, **SHAPE, **parts)
    tokens = torch.randint(0, SHAPE["vocab_size"], (2, SHAPE["block_size"]), generator=torch.Generator().manual_seed(0))
    torch._dynamo.reset()
    explained = torch._dynamo.explain(model)(tokens, labels=tokens)
    assert explained.graph_break_count == 0, [reason.reason.splitlines()[:2] for reason in explained.break_reasons]
    assert explained.graph_count == 1
    eager = model(tokens, labels=tokens)["loss"]
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)(tokens, labels=tokens)["loss"]
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-6)


def test_every_registered_part_is_in_some_checked_model():
    covered = {(kind, parts[kind]) for parts in part_models() for kind in KINDS}
    registered = {(kind, component.name) for kind in KINDS for component in get_registry().components(kind)}
    assert covered == registered


def _compile_with_checkpointing(strategy: str) -> tuple[int, dict[str, int], torch.nn.Module]:
    """A tiny model with activation checkpointing, compiled through `prepare_model` as a trainer would, after a
    forward and backward pass: the graphs compiled, the graph breaks by reason, the model."""
    torch._dynamo.reset()
    counters["graph_break"].clear()
    counter = CompileCounterWithBackend("aot_eager")
    model = prepare_model(
        tiny_model(dropout=0.1),
        strategy,
        torch.device("cpu"),
        activation_checkpointing=True,
        compile_model=True,
        compile_backend=counter,
    )
    tokens = torch.randint(0, 17, (2, 16), generator=torch.Generator().manual_seed(0))
    torch.manual_seed(5)
    model(tokens, labels=tokens)["loss"].backward()
    return counter.frame_count, dict(counters["graph_break"]), model


def test_compiled_activation_checkpointing_is_one_graph_without_breaks_and_the_eager_gradients():
    graphs, breaks, compiled = _compile_with_checkpointing("none")
    assert (graphs, breaks) == (1, {})
    eager = tiny_model(dropout=0.1)  # no checkpointing, not compiled; the same dropout masks from the same seed
    tokens = torch.randint(0, 17, (2, 16), generator=torch.Generator().manual_seed(0))
    torch.manual_seed(5)
    eager(tokens, labels=tokens)["loss"].backward()
    for (name, parameter), reference in zip(compiled.named_parameters(), eager.parameters(), strict=True):
        torch.testing.assert_close(parameter.grad, reference.grad, rtol=1e-5, atol=1e-6, msg=name)


def _count_graphs_of_each_strategy(rank: int, out: Path) -> None:
    from cleangpt_core.distributed.process_group import init_distributed

    init_distributed(torch.device("cpu"))
    counted = {}
    for strategy in ("ddp", "fsdp"):
        graphs, breaks, _ = _compile_with_checkpointing(strategy)
        counted[strategy] = {"graphs": graphs, "breaks": breaks}
    if rank == 0:
        out.write_text(json.dumps(counted))


def test_under_ddp_and_fsdp_compiled_activation_checkpointing_has_one_graph_per_block_and_no_break(tmp_path):
    # DDP: the model is compiled whole before it is wrapped; FSDP2: each block on its own, its gathers between
    # the graphs; the blocks are alike, so their one graph serves them all
    on_two_ranks(_count_graphs_of_each_strategy, tmp_path / "counts.json")
    counted = json.loads((tmp_path / "counts.json").read_text())
    assert counted == {"ddp": {"graphs": 1, "breaks": {}}, "fsdp": {"graphs": 1, "breaks": {}}}
