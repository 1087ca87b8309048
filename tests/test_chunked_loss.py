"""The head and loss computed chunk by chunk: the same losses and gradients as the plain computation, no
(B, T, vocab) logits kept, and an output whose logits appear when read."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from cleangpt_core.kernels import LazyLogits, chunked_head, chunked_head_loss, fixed, head_loss_chunk
from cleangpt_core.kernels.chunked_loss import EVAL_CHUNK_ELEMENTS, TRAIN_CHUNK_ELEMENTS
from cleangpt_core.model import get_model
from cleangpt_core.registry import get_registry

SHAPE = {"vocab_size": 97, "n_layer": 2, "n_head": 4, "n_embd": 32, "block_size": 16}
TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}
PLAIN = 1 << 62  # chunk nothing: the plain computation


def plain_loss(hidden, weight, targets, softcap=None):
    logits = hidden @ weight.t()
    if softcap is not None:
        logits = softcap * torch.tanh(logits / softcap)
    return F.cross_entropy(logits.float(), targets, ignore_index=-100)


def leaves(*tensors):
    return [tensor.detach().clone().requires_grad_(True) for tensor in tensors]


@pytest.mark.parametrize("softcap", [None, 3.0])
@pytest.mark.parametrize("chunk_rows", [1, 7, 64])
def test_loss_and_gradients_equal_the_plain_computation(softcap, chunk_rows):
    generator = torch.Generator().manual_seed(0)
    hidden, weight = torch.randn(50, 16, generator=generator), torch.randn(97, 16, generator=generator)
    targets = torch.randint(0, 97, (50,), generator=generator)
    targets[[3, 17, 40]] = -100
    h1, w1 = leaves(hidden, weight)
    expected = plain_loss(h1, w1, targets, softcap)
    expected.backward()
    h2, w2 = leaves(hidden, weight)
    loss = chunked_head_loss(h2, w2, targets, softcap, 97 * chunk_rows)
    (loss * 1.0).backward()
    torch.testing.assert_close(loss, expected, **TOLERANCE)
    torch.testing.assert_close(h2.grad, h1.grad, **TOLERANCE)
    torch.testing.assert_close(w2.grad, w1.grad, **TOLERANCE)


class CountedProducts(TorchDispatchMode):
    """Counts the matrix products run inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.products = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket in (torch.ops.aten.mm, torch.ops.aten.addmm_, torch.ops.aten.addmm):
            self.products += 1
        return func(*args, **(kwargs or {}))


def test_without_gradients_only_the_loss_is_computed():
    """Under no_grad (evaluation) a chunk costs one product, even when the parameters require gradients."""
    hidden, weight = torch.randn(9, 4, requires_grad=True), torch.randn(11, 4, requires_grad=True)
    targets = torch.randint(0, 11, (9,))
    with torch.no_grad(), CountedProducts() as counted:
        loss = chunked_head_loss(hidden, weight, targets, elements=11 * 3)
    torch.testing.assert_close(loss, plain_loss(hidden, weight, targets), **TOLERANCE)
    assert loss.grad_fn is None
    assert counted.products == 4  # 9 rows by four slices of 3 of the 11 ids, no gradient products


@pytest.mark.parametrize("softcap", [None, 3.0])
@pytest.mark.parametrize("elements", [1, 5, 97 * 3, 97 * 64])
def test_the_loss_without_gradients_equals_the_plain_computation(softcap, elements):
    """Evaluation's tiles of rows by vocabulary slices, of every shape: one element, several rows of a few ids,
    whole rows, everything at once."""
    generator = torch.Generator().manual_seed(2)
    hidden, weight = torch.randn(50, 16, generator=generator) * 3, torch.randn(97, 16, generator=generator)
    targets = torch.randint(0, 97, (50,), generator=generator)
    targets[[0, 21, 49]] = -100
    with torch.no_grad():
        loss = chunked_head_loss(hidden, weight, targets, softcap, elements)
    torch.testing.assert_close(loss, plain_loss(hidden, weight, targets, softcap), **TOLERANCE)


def test_bf16_autocast_matches_the_plain_computation_under_autocast():
    generator = torch.Generator().manual_seed(1)
    hidden, weight = torch.randn(32, 16, generator=generator), torch.randn(97, 16, generator=generator)
    targets = torch.randint(0, 97, (32,), generator=generator)
    h1, w1 = leaves(hidden, weight)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = F.cross_entropy(F.linear(h1, w1).float(), targets)
        loss = chunked_head_loss(*(h2w2 := leaves(hidden, weight)), targets, elements=97 * 5)
    expected.backward()
    loss.backward()
    assert loss.dtype == torch.float32 and h2w2[1].grad.dtype == torch.float32
    torch.testing.assert_close(loss, expected, rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(h2w2[0].grad, h1.grad, rtol=2e-2, atol=2e-3)
    torch.testing.assert_close(h2w2[1].grad, w1.grad, rtol=2e-2, atol=2e-3)


def presets():
    """Every registered architecture, tied and untied where its schema has the choice (SASP is always tied)."""
    cases = []
    for component in get_registry().components("architecture"):
        fields = component.config_schema.model_fields if component.config_schema is not None else {}
        ties = (True, False) if "tie_embeddings" in fields else (None,)
        cases += [(component.name, tie) for tie in ties]
    return cases


@pytest.mark.parametrize(("architecture", "tie"), presets())
def test_every_preset_trains_on_the_same_loss_and_gradients_chunked(architecture, tie):
    torch.manual_seed(0)
    model = get_model(architecture, **SHAPE, **({} if tie is None else {"tie_embeddings": tie}))
    if not hasattr(model, "head_output"):
        pytest.skip(f"{architecture} computes its own loss")
    tie = model.lm_head.weight is model.transformer.wte.weight if tie is None else tie
    tokens = torch.randint(0, SHAPE["vocab_size"], (3, SHAPE["block_size"] + 1))
    inputs, labels = tokens[:, :-1], tokens.clone()
    labels[0, 5] = -100
    results = []
    for elements in (PLAIN, 1):  # plain, then one row per chunk
        model.zero_grad(set_to_none=True)
        with chunked_head(elements):
            output = model(inputs, labels=labels if model.accepts_final_label else labels[:, :-1])
        output["loss"].backward()
        results.append((output, {name: p.grad.clone() for name, p in model.named_parameters()}))
    (plain, plain_grads), (chunked, chunked_grads) = results
    assert isinstance(chunked, LazyLogits) and not isinstance(plain, LazyLogits)
    assert (model.lm_head.weight is model.transformer.wte.weight) == tie
    torch.testing.assert_close(chunked["loss"], plain["loss"], **TOLERANCE)
    for name, grad in plain_grads.items():
        torch.testing.assert_close(chunked_grads[name], grad, **TOLERANCE, msg=name)
    torch.testing.assert_close(chunked["logits"], plain["logits"], **TOLERANCE)


def test_a_softcapped_head_gives_the_same_loss_and_gradients_chunked():
    torch.manual_seed(0)
    model = get_model("Llama", **SHAPE, logit_softcap=2.0)
    tokens = torch.randint(0, SHAPE["vocab_size"], (2, SHAPE["block_size"] + 1))
    losses, grads = [], []
    for elements in (PLAIN, 1):
        model.zero_grad(set_to_none=True)
        with chunked_head(elements):
            loss = model(tokens[:, :-1], labels=tokens)["loss"]
        loss.backward()
        losses.append(loss)
        grads.append(model.lm_head.weight.grad.clone())
    torch.testing.assert_close(losses[1], losses[0], **TOLERANCE)
    torch.testing.assert_close(grads[1], grads[0], **TOLERANCE)


def test_the_lazy_output_is_a_dict_whose_logits_appear_when_read():
    torch.manual_seed(0)
    model = get_model("Vanilla", **SHAPE).eval()
    tokens = torch.randint(0, SHAPE["vocab_size"], (2, 8))
    with torch.no_grad(), chunked_head(1):
        output = model(tokens, labels=tokens)
        expected = model(tokens)["logits"]
        assert isinstance(output, dict) and set(output) == {"logits", "loss"} and "logits" in output
        assert "not computed yet" in repr(output)
        torch.testing.assert_close(output.get("logits"), expected)
        torch.testing.assert_close({**output}["logits"], expected)
        assert all(value is not None for value in output.values())


def test_small_logits_keep_the_plain_computation_when_chunking():
    model = get_model("Vanilla", **SHAPE)
    tokens = torch.randint(0, SHAPE["vocab_size"], (2, 8))
    assert type(model(tokens, labels=tokens)) is dict
    with chunked_head():  # 2 x 8 x 97 logits fit one chunk
        assert type(model(tokens, labels=tokens)) is dict


def test_the_head_chunks_as_fixed_and_only_logits_larger_than_a_chunk():
    """`head_loss_chunk` says how the model computes the head: the chunk size fixed (or measured), None for
    whole logits, which is also the answer where one chunk would hold them all, and on devices other than a CPU."""
    weight, targets = torch.randn(97, 8), torch.zeros(0, dtype=torch.long)
    rows = TRAIN_CHUNK_ELEMENTS // 97 + 1
    with fixed(head_loss="plain"):
        assert head_loss_chunk(torch.empty(rows, 8), weight, targets, None) is None
    with chunked_head():
        assert head_loss_chunk(torch.empty(rows, 8), weight, targets, None) == TRAIN_CHUNK_ELEMENTS
        assert head_loss_chunk(torch.empty(rows - 1, 8), weight, targets, None) is None  # fits one chunk
        assert head_loss_chunk(torch.empty(rows, 8, device="meta"), weight, targets, None) is None
    with chunked_head(EVAL_CHUNK_ELEMENTS), torch.no_grad():
        assert head_loss_chunk(torch.empty(rows, 8), weight, targets, None) == EVAL_CHUNK_ELEMENTS
    with chunked_head(PLAIN):
        assert head_loss_chunk(torch.empty(rows, 8), weight, targets, None) is None
