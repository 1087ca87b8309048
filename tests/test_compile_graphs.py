"""torch.compile takes every preset and every registered part in one graph: no graph breaks, the same loss.

A graph break splits the model into pieces compiled apart, run with Python in between: on a GPU, no fusion
across it and no CUDA graphs. `torch._dynamo.explain` counts them. The presets (Vanilla, Llama, SASP) are
checked as they are; the parts in models that together use every registered option of every kind (the
i-th model takes each kind's i-th option, wrapping around), so each part is compiled in some neighbourhood.
"""

from __future__ import annotations

import pytest
import torch

from cleangpt_core.model import get_model
from cleangpt_core.registry import get_registry

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
