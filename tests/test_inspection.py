"""The capture API: recorded outputs are the forward pass's, attention weights are the ones applied, and
patching changes the logits exactly as running the rest of the model by hand on the patched stream does."""

from __future__ import annotations

import pytest
import torch

from cleangpt_core.errors import InspectionError
from cleangpt_core.inspection import (
    attention_part_names,
    capture,
    hook_point_names,
    inspect_ids,
    lens_logits,
    part_names,
)
from cleangpt_core.model import get_model
from cleangpt_core.model.kv_cache import begin_forward
from cleangpt_core.registry import BUILTIN_DISTRIBUTION, get_registry
from cleangpt_core.testing.architecture import perturb_parameters
from cleangpt_core.tokenizers import CharacterTokenizer

SIZE = {"n_layer": 2, "n_head": 2, "n_embd": 16, "block_size": 16, "vocab_size": 40, "dropout": 0.0}
BUILTIN_PARTS = [
    (kind, component.name)
    for kind in ("attention", "feedforward", "norm", "position", "residual")
    for component in get_registry().components(kind)
    if component.distribution == BUILTIN_DISTRIBUTION
]


def _model(preset: str = "Vanilla", **parts: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return perturb_parameters(get_model(preset, **SIZE, **parts), seed=1).eval()


def _ids(seed: int = 0, length: int = 9) -> torch.Tensor:
    return torch.randint(0, SIZE["vocab_size"], (2, length), generator=torch.Generator().manual_seed(seed))


def _stream_and_layout(model, ids):
    """The residual stream entering block 0, and the call's attention layout, computed by hand."""
    layout = begin_forward(ids, None, None)
    x, layout = model.transformer.wpe(model.transformer.wte(ids), layout)
    return model.transformer.drop(x), layout


def _block_by_hand(block, residual: str, x: torch.Tensor, seen, prefix: str) -> torch.Tensor:
    """Block `prefix`'s output from its recorded sub-part outputs, by the wiring's own formula."""
    attn, mlp = seen[f"{prefix}.attn"], seen[f"{prefix}.mlp"]
    if residual == "pre_norm":
        assert torch.allclose(seen[f"{prefix}.ln_1"], block.ln_1(x), atol=1e-6)
        return x + attn + mlp
    if residual == "parallel":
        return x + attn + mlp
    return block.ln_2(block.ln_1(x + attn) + mlp)  # post_norm


@pytest.mark.parametrize(("kind", "part"), BUILTIN_PARTS)
def test_recorded_outputs_are_the_forward_pass_for_every_built_in_part(kind, part):
    model = _model(**{kind: part})
    residual = part if kind == "residual" else "pre_norm"
    ids = _ids()
    with capture(model, attention=True) as seen:
        logits = model(ids)["logits"]
    x, layout = _stream_and_layout(model, ids)
    assert torch.equal(seen["drop"], x)
    for index, block in enumerate(model.transformer.h):
        assert torch.allclose(_block_by_hand(block, residual, x, seen, f"h.{index}"), seen[f"h.{index}"], atol=1e-5)
        x = block(x, layout, None)
        assert torch.equal(seen[f"h.{index}"], x)
    assert torch.equal(seen["ln_f"], model.transformer.ln_f(x))
    assert torch.equal(seen["lm_head"], logits)
    assert torch.allclose(lens_logits(model, seen[f"h.{len(model.transformer.h) - 1}"]), logits, atol=1e-6)


@pytest.mark.parametrize("preset", ["Vanilla", "Llama"])
@pytest.mark.parametrize("position", ["learned", "rotary", "alibi", "none"])
def test_attention_weights_are_the_ones_the_part_applies(preset, position):
    model = _model(preset, position=position, **({"n_kv_head": 1} if preset == "Llama" else {}))
    ids = _ids(length=7)
    with capture(model, ["h.*.ln_1", "h.*.attn"], attention=True) as seen:
        model(ids)
    assert seen.without_attention == []
    for index, block in enumerate(model.transformer.h):
        weights = seen.attention[f"h.{index}.attn"]  # (B, H, T, T)
        assert weights.shape == (2, SIZE["n_head"], 7, 7)
        assert torch.allclose(weights.sum(-1), torch.ones(2, SIZE["n_head"], 7))
        assert torch.all(weights.triu(diagonal=1) == 0)  # causal: nothing from later tokens
        # the part's output rebuilt from the recorded weights and its own value projection
        attn = block.attn
        qkv = attn.c_attn(seen[f"h.{index}.ln_1"]).view(2, 7, attn.n_head + 2 * attn.n_kv_head, attn.head_dim)
        v = qkv.transpose(1, 2)[:, attn.n_head + attn.n_kv_head :].repeat_interleave(attn.n_head // attn.n_kv_head, 1)
        rebuilt = attn.c_proj((weights @ v).transpose(1, 2).reshape(2, 7, SIZE["n_embd"]))
        assert torch.allclose(rebuilt, seen[f"h.{index}.attn"], atol=1e-5)


def test_patching_a_layer_with_another_prompts_output_changes_the_logits_as_computed_by_hand():
    model = _model()
    clean, corrupt = _ids(0), _ids(1)
    with capture(model, ["h.0"]) as source:
        model(corrupt)
    with capture(model, ["h.1"], patch={"h.0": source["h.0"]}) as seen:
        patched = model(clean)["logits"]
    _, layout = _stream_and_layout(model, clean)
    x = model.transformer.h[1](source["h.0"], layout, None)
    by_hand = model.lm_head(model.transformer.ln_f(x))
    assert torch.allclose(patched, by_hand, atol=1e-6)
    assert torch.equal(seen["h.1"], x)
    assert not torch.allclose(patched, model(clean)["logits"], atol=1e-3)


def test_a_patch_function_receives_the_output_and_its_result_flows_on():
    model = _model()
    ids = _ids()
    with capture(model, ["h.1.mlp", "h.1"], patch={"h.1.mlp": torch.zeros_like}) as seen:
        patched = model(ids)["logits"]
    assert torch.equal(seen["h.1.mlp"], torch.zeros_like(seen["h.1.mlp"]))
    with capture(model, ["h.0", "h.1.attn"]) as clean:
        model(ids)
    assert torch.allclose(seen["h.1"], clean["h.0"] + clean["h.1.attn"], atol=1e-6)  # pre-norm, MLP silenced
    assert torch.allclose(patched, model.lm_head(model.transformer.ln_f(seen["h.1"])), atol=1e-6)


def test_hooks_are_gone_after_the_block_also_after_an_error():
    model = _model()
    with pytest.raises(RuntimeError, match="boom"), capture(model, attention=True):
        raise RuntimeError("boom")
    with capture(model, attention=True):
        model(_ids())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert torch.equal(model(_ids())["logits"], model(_ids())["logits"])


def test_an_unknown_name_or_a_misshapen_patch_is_one_clear_error():
    model = _model()
    unknown = r"no part or hook point of the model is named 'h\.9\.attn'; names look like wte"
    with pytest.raises(InspectionError, match=unknown), capture(model, ["h.9.attn"]):
        pass
    misshapen = r"the patch for 'h\.0' has shape \(1, 2\), the output \(2, 9, 16\)"
    with pytest.raises(InspectionError, match=misshapen), capture(model, patch={"h.0": torch.zeros(1, 2)}):
        model(_ids())


def test_names_are_stable_and_attention_parts_are_found_in_a_plugin_architecture():
    model = get_model("SASP", **SIZE)
    assert {"h.0.attn", "h.1.mlp", "ln_f", "wte"} <= set(part_names(model))
    assert attention_part_names(model) == ["h.0.attn", "h.1.attn"]
    with capture(model, ["ln_f"], attention=True) as seen:
        model(_ids())
    assert seen["ln_f"].shape == (2, 9, SIZE["n_embd"])
    assert set(seen.attention) == {"h.0.attn", "h.1.attn"}


def test_a_part_that_does_not_attend_through_the_layout_reports_no_weights():
    model = _model()

    class Opaque(torch.nn.Module):  # a plugin part that computes attention its own way
        def forward(self, x, layout, kv_cache):
            return torch.zeros_like(x)

    model.transformer.h[1].attn = Opaque()
    with capture(model, attention=True) as seen:
        model(_ids())
    assert seen.without_attention == ["h.1.attn"]
    assert list(seen.attention) == ["h.0.attn"]


def test_inspect_reports_token_losses_the_logit_lens_and_attention():
    model = _model()
    tokenizer = CharacterTokenizer()
    tokenizer.fit(["abcdefghijklmnopqrstuvwxyz ,.!?ABCDEFGH"])
    ids = tokenizer.encode("hello world")
    result = inspect_ids(model, tokenizer, ids, top_k=3)
    with torch.no_grad():
        logits = model(torch.tensor([ids]))["logits"][0]
    log_probs = torch.log_softmax(logits, -1)
    assert result["tokens"][0]["logprob"] is None
    for t in range(1, len(ids)):
        assert result["tokens"][t]["logprob"] == pytest.approx(float(log_probs[t - 1, ids[t]]), abs=1e-4)
        assert [top["id"] for top in result["tokens"][t]["top"]] == log_probs[t - 1].topk(3).indices.tolist()
    assert [layer["layer"] for layer in result["logit_lens"]] == ["embeddings", "h.0", "h.1"]
    assert result["logit_lens"][-1]["loss"] == pytest.approx(result["mean_loss"], abs=1e-4)
    assert len(result["attention"]["h.0.attn"]) == SIZE["n_head"]
    assert len(result["attention"]["h.0.attn"][0]) == len(ids)


def test_the_capture_api_is_reachable_from_the_package_part_authors_import():
    import cleangpt_core.inspection as inspection
    import cleangpt_core.model as model

    assert model.capture is inspection.capture and model.part_names is inspection.part_names
    assert {"capture", "part_names", "Capture"} <= set(dir(model))


# -- names: a bare string, exact names, globs within one dotted part -----------------------------------------


def test_a_bare_string_is_one_name_not_its_characters():
    model = _model()
    with capture(model, "ln_f", attention="h.0.attn") as seen:
        model(_ids())
    assert list(seen.outputs) == ["ln_f"]
    assert list(seen.attention) == ["h.0.attn"]


def test_a_name_is_exact_and_a_star_stays_within_one_dotted_part():
    model = _model()
    with capture(model, ["h.*"]) as blocks:
        model(_ids())
    assert list(blocks.outputs) == ["h.0", "h.1"]
    with capture(model, ["h.1"]) as one:
        model(_ids())
    assert list(one.outputs) == ["h.1"]
    with capture(model, ["h.**.c_proj"]) as projections:
        model(_ids())
    assert list(projections.outputs) == ["h.0.attn.c_proj", "h.0.mlp.c_proj", "h.1.attn.c_proj", "h.1.mlp.c_proj"]
    with capture(model, ["h.*.attn.hook_[qkv]"]) as qkv:
        model(_ids())
    assert sorted(qkv.outputs) == [f"h.{i}.attn.hook_{x}" for i in range(2) for x in "kqv"]


def test_the_hook_points_are_listed_for_every_block_and_attention_part():
    model = _model()
    points = hook_point_names(model)
    for index in range(SIZE["n_layer"]):
        assert {f"h.{index}.hook_resid_pre", f"h.{index}.hook_resid_post"} <= set(points)
        hooks = ("hook_q", "hook_k", "hook_v", "hook_attn_scores", "hook_pattern")
        assert {f"h.{index}.attn.{hook}" for hook in hooks} <= set(points)
    assert not set(points) & set(part_names(model))


# -- hook points: the residual stream, queries, keys, values, scores and pattern ---------------------------------


def test_the_residual_stream_before_and_after_each_block():
    model = _model()
    ids = _ids()
    names = ["drop", "h.*", "h.*.hook_resid_pre", "h.*.hook_resid_post"]
    with capture(model, names) as seen:
        model(ids)
    assert torch.equal(seen["h.0.hook_resid_pre"], seen["drop"])
    assert torch.equal(seen["h.1.hook_resid_pre"], seen["h.0"])
    assert all(torch.equal(seen[f"h.{i}.hook_resid_post"], seen[f"h.{i}"]) for i in range(2))


def test_patching_the_stream_entering_a_block_is_running_the_rest_by_hand():
    model = _model()
    ids = _ids()
    replacement = torch.randn(2, 9, SIZE["n_embd"], generator=torch.Generator().manual_seed(5))
    with capture(model, ["h.1.hook_resid_pre"], patch={"h.1.hook_resid_pre": replacement}) as seen:
        patched = model(ids)["logits"]
    _, layout = _stream_and_layout(model, ids)
    by_hand = model.lm_head(model.transformer.ln_f(model.transformer.h[1](replacement, layout, None)))
    assert torch.equal(seen["h.1.hook_resid_pre"], replacement)
    assert torch.allclose(patched, by_hand, atol=1e-6)


@pytest.mark.parametrize(
    ("preset", "parts"), [("Vanilla", {}), ("Llama", {"n_kv_head": 1}), ("Vanilla", {"position": "alibi"})]
)
def test_queries_keys_values_scores_and_pattern_are_the_ones_attention_uses(preset, parts):
    model = _model(preset, **parts)
    ids = _ids(length=7)
    with capture(model, ["h.0.ln_1", "h.0.attn", "h.0.attn.hook_*"], attention=True) as seen:
        model(ids)
    attn = model.transformer.h[0].attn
    q, k, v = seen["h.0.attn.hook_q"], seen["h.0.attn.hook_k"], seen["h.0.attn.hook_v"]
    assert q.shape == (2, SIZE["n_head"], 7, attn.head_dim)
    assert k.shape == v.shape == (2, attn.n_kv_head, 7, attn.head_dim)
    qkv = attn.c_attn(seen["h.0.ln_1"]).view(2, 7, attn.n_head + 2 * attn.n_kv_head, attn.head_dim).transpose(1, 2)
    _, layout = _stream_and_layout(model, ids)
    by_hand_q, by_hand_k = layout.rotate(qkv[:, : attn.n_head], qkv[:, attn.n_head : attn.n_head + attn.n_kv_head])
    assert torch.allclose(q, by_hand_q, atol=1e-6) and torch.allclose(k, by_hand_k, atol=1e-6)
    assert torch.equal(v, qkv[:, attn.n_head + attn.n_kv_head :])

    scores, pattern = seen["h.0.attn.hook_attn_scores"], seen["h.0.attn.hook_pattern"]
    keys = k.repeat_interleave(attn.n_head // attn.n_kv_head, dim=1)
    expected = q @ keys.transpose(-2, -1) / attn.head_dim**0.5 + (0 if layout.bias is None else layout.bias)
    visible = torch.ones(7, 7, dtype=torch.bool).tril()
    assert torch.allclose(scores[..., visible], expected[..., visible], atol=1e-5)
    assert torch.all(scores[..., ~visible] == float("-inf"))  # what the softmax takes: masked keys at -inf
    assert torch.equal(pattern, scores.softmax(-1)) and torch.equal(pattern, seen.attention["h.0.attn"])


def test_patching_the_pattern_attends_with_it_and_patching_the_values_changes_what_is_averaged():
    model = _model()
    ids = _ids(length=7)
    attn = model.transformer.h[0].attn
    with capture(model, ["h.0.attn", "h.0.attn.hook_v", "h.0.attn.hook_pattern"]) as clean:
        logits = model(ids)["logits"]
    with capture(model, ["h.0.attn"], patch={"h.0.attn.hook_pattern": lambda pattern: pattern}) as same:
        by_hand = model(ids)["logits"]
    assert torch.allclose(same["h.0.attn"], clean["h.0.attn"], atol=1e-6)  # attention by hand = the kernel
    assert torch.allclose(by_hand, logits, atol=1e-5)

    uniform = torch.ones(7, 7).tril()
    uniform = (uniform / uniform.sum(-1, keepdim=True)).expand(2, SIZE["n_head"], 7, 7)
    with capture(model, ["h.0.attn"], patch={"h.0.attn.hook_pattern": uniform}) as averaged:
        model(ids)
    values = clean["h.0.attn.hook_v"]
    means = values.cumsum(dim=2) / torch.arange(1, 8).view(1, 1, 7, 1)  # each query: the mean of the values so far
    expected = attn.c_proj(means.transpose(1, 2).reshape(2, 7, SIZE["n_embd"]))
    assert torch.allclose(averaged["h.0.attn"], expected, atol=1e-5)

    with capture(model, ["h.0.attn"], patch={"h.0.attn.hook_v": torch.zeros_like}) as silenced:
        model(ids)
    assert torch.allclose(silenced["h.0.attn"], attn.c_proj.bias.expand(2, 7, -1), atol=1e-6)


def test_keys_and_values_of_a_cached_step_hold_the_cached_ones():
    model = _model("Llama")
    ids = _ids(length=6)
    cache = model.allocate_kv_cache(2, SIZE["block_size"])
    with torch.no_grad():
        model(ids[:, :5], kv_cache=cache)
        with capture(model, ["h.0.attn.hook_q", "h.0.attn.hook_k"]) as step:
            model(ids[:, 5:], kv_cache=cache)
        with capture(model, ["h.0.attn.hook_k"]) as full:
            model(ids)
    assert step["h.0.attn.hook_q"].shape[2] == 1
    assert torch.allclose(step["h.0.attn.hook_k"], full["h.0.attn.hook_k"], atol=1e-5)


def test_a_part_that_does_not_attend_through_the_layout_has_no_hook_points_inside():
    model = _model()

    class Opaque(torch.nn.Module):
        def forward(self, x, layout, kv_cache):
            return torch.zeros_like(x)

    model.transformer.h[1].attn = Opaque()
    with capture(model, ["h.*.attn.hook_q"]) as seen:
        model(_ids())
    assert seen.without_attention == ["h.1.attn"]
    assert seen["h.0.attn.hook_q"].shape[1] == SIZE["n_head"]
    with pytest.raises(InspectionError, match="h.1.attn does not attend through layout.attend"):
        seen["h.1.attn.hook_q"]
