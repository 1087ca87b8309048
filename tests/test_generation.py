"""generate, run_generation and batch_generate: cached decoding, sampling, EOS, padding and streaming."""

from __future__ import annotations

import pytest
import torch

from cleangpt_core.errors import ConfigError, GenerationError
from cleangpt_core.inference.decoding import generate_tokens
from cleangpt_core.inference.generation import batch_generate, run_generation
from cleangpt_core.model import AttentionLayout, begin_forward, get_model
from cleangpt_core.testing.architecture import perturb_parameters
from cleangpt_core.tokenizers import CharacterTokenizer

VOCAB = list("abcdefghijklmnopqrstuvwxyz .,")


@pytest.fixture(scope="module")
def tokenizer():
    return CharacterTokenizer(vocab=VOCAB)


@pytest.fixture(scope="module", params=["Vanilla", "SASP"])
def model(request, tokenizer):
    torch.manual_seed(0)
    model = get_model(request.param, vocab_size=tokenizer.vocab_size, n_layer=2, n_head=2, n_embd=32, block_size=16)
    return perturb_parameters(model, scale=0.3).eval()


def _recompute_greedy(model, prompt_ids, steps):
    ids = torch.tensor([prompt_ids])
    with torch.no_grad():
        for _ in range(steps):
            logits = model(ids[:, -model.config.block_size :])["logits"][:, -1]
            ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], dim=1)
    return ids[0].tolist()


def test_greedy_run_generation_equals_recomputation_past_the_context(model, tokenizer):
    prompt = "the quick brown fox jumps"  # 25 characters, longer than block_size=16: cropped from the left
    ids, text = run_generation(model, tokenizer, prompt, "cpu", max_new_tokens=20, temperature=0.0, stop_at_eos=False)
    prompt_ids = tokenizer.encode(prompt)
    assert ids[: len(prompt_ids)] == prompt_ids
    assert ids[len(prompt_ids) :] == _recompute_greedy(model, prompt_ids[-16:], 20)[16:]
    assert text == tokenizer.decode(ids, skip_special_tokens=True)


def test_seeded_sampling_is_reproducible_and_seeds_differ(model, tokenizer):
    def sample(seed):
        return run_generation(model, tokenizer, "abc", "cpu", 30, temperature=1.5, seed=seed, stop_at_eos=False)[0]

    assert sample(1) == sample(1)
    assert sample(1) != sample(2)


def test_streaming_pieces_add_up_to_the_generated_text(model, tokenizer):
    pieces = []
    _, text = run_generation(model, tokenizer, "abc", "cpu", 15, temperature=0.0, stream=pieces.append)
    assert len(pieces) >= 2
    assert "abc" + "".join(pieces) == text


def test_batch_generate_runs_one_padded_batch_and_matches_single_prompts(model, tokenizer):
    prompts = ["hello there", "a", "so it goes, and goes"]
    batch_sizes = []
    handle = model.register_forward_pre_hook(
        lambda _m, args, kwargs: batch_sizes.append(args[0].size(0)), with_kwargs=True
    )
    try:
        results = batch_generate(model, tokenizer, prompts, "cpu", max_new_tokens=12, temperature=0.0)
    finally:
        handle.remove()
    assert set(batch_sizes) == {3}  # one batch, never a loop over prompts
    for prompt, result in zip(prompts, results, strict=True):
        ids, text = run_generation(model, tokenizer, prompt, "cpu", 12, temperature=0.0)
        assert result["prompt"] == prompt
        assert result["token_ids"] == ids
        assert result["generated_text"] == text
        assert text == prompt + result["completion"]


def test_generation_stops_each_row_at_eos_and_pads_after_it(model):
    prompt = torch.tensor([[1, 2, 3], [4, 5, 6]])
    free = generate_tokens(model, prompt, 10, temperature=0.0)
    eos = int(free[0, 5])  # the third token row 0 generates
    stopped = generate_tokens(model, prompt, 10, temperature=0.0, eos_token_id=eos, pad_token_id=0)
    row = stopped[0, 3:].tolist()
    first_eos = row.index(eos)
    assert row[: first_eos + 1] == free[0, 3 : 4 + first_eos].tolist()
    assert all(token == 0 for token in row[first_eos + 1 :])
    if eos not in free[1, 3:].tolist():
        assert stopped.size(1) == free.size(1)  # row 1 never finished, so generation ran to the end


def test_generation_ends_early_once_every_row_has_finished(model):
    prompt = torch.tensor([[1, 2, 3]])
    free = generate_tokens(model, prompt, 10, temperature=0.0)
    stopped = generate_tokens(model, prompt, 10, temperature=0.0, eos_token_id=int(free[0, 4]))
    assert stopped.tolist() == free[:, : stopped.size(1)].tolist()
    assert stopped.size(1) <= 5


@pytest.mark.parametrize(
    ("sampler", "options"),
    [("greedy", {}), ("top_k", {"top_k": 1, "temperature": 1.0}), ("temperature", {"temperature": 0.0})],
)
def test_named_samplers_that_reduce_to_argmax_give_greedy_tokens(model, sampler, options):
    prompt = torch.tensor([[1, 2, 3]])
    greedy = model.generate(prompt, 8, temperature=0.0)
    assert torch.equal(model.generate(prompt, 8, sampler=sampler, **options), greedy)


def test_a_sampler_function_can_be_passed_directly(model):
    prompt = torch.tensor([[1, 2, 3]])
    lowest = model.generate(prompt, 5, sampler=lambda logits, generator=None: logits.argmin(-1, keepdim=True))
    assert torch.equal(lowest[:, 3:], _argmin_decoding(model, prompt, 5))


def _argmin_decoding(model, prompt, steps):
    ids = prompt
    with torch.no_grad():
        for _ in range(steps):
            ids = torch.cat([ids, model(ids)["logits"][:, -1].argmin(-1, keepdim=True)], dim=1)
    return ids[:, prompt.size(1) :]


def test_generate_restores_training_mode(model):
    model.train()
    try:
        model.generate(torch.tensor([[1, 2]]), 3, temperature=0.0)
        assert model.training
    finally:
        model.eval()


def test_empty_prompt_is_a_clear_error(model, tokenizer):
    with pytest.raises(GenerationError, match="no tokens"):
        run_generation(model, tokenizer, "", "cpu", 5)


def test_invalid_sampling_parameters_fail_before_generating(model, tokenizer):
    with pytest.raises(ValueError, match="top_p"):
        run_generation(model, tokenizer, "abc", "cpu", 5, top_p=1.5)


@pytest.mark.parametrize(("name", "function"), [("top_p", "top_p_sampling"), (None, "combined_sampling")])
def test_built_in_samplers_run_through_their_registered_functions(model, monkeypatch, name, function):
    """Like a third party's: no private fast path, so what the registry names is what runs."""
    from cleangpt_core.inference import sampling_strategies

    real, calls = getattr(sampling_strategies, function), []

    def recording(logits, **options):
        calls.append(options)
        return real(logits, **options)

    monkeypatch.setattr(sampling_strategies, function, recording)
    generate_tokens(model, torch.tensor([[1, 2, 3]]), 4, sampler=name, top_p=0.5)
    assert len(calls) == 4
    assert calls[0]["p" if name else "top_p"] == 0.5


def test_an_option_a_named_sampler_does_not_take_is_an_error(model):
    with pytest.raises(ConfigError, match="sampler 'greedy' does not take temperature; greedy takes no options"):
        generate_tokens(model, torch.tensor([[1, 2, 3]]), 4, sampler="greedy", temperature=0.5)
    with pytest.raises(ConfigError, match="sampler 'top_k' does not take top_p; top_k takes temperature, top_k"):
        generate_tokens(model, torch.tensor([[1, 2, 3]]), 4, sampler="top_k", top_p=0.5)


def _rotate_half(x):
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def test_rotation_is_hugging_faces_rotate_half_bit_for_bit():
    generator = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 4, 3, 8, generator=generator), torch.randn(2, 2, 3, 8, generator=generator)
    cos, sin = torch.randn(2, 1, 3, 8, generator=generator), torch.randn(2, 1, 3, 8, generator=generator)
    layout = AttentionLayout(mask=None, is_causal=True, rotary=(cos, sin))
    for rotated, x in zip(layout.rotate(q, k), (q, k), strict=True):
        assert torch.equal(rotated, x * cos + _rotate_half(x) * sin)


def test_rotary_looks_up_the_angles_of_each_left_padded_position():
    model = get_model("Llama", vocab_size=29, n_layer=1, n_head=2, n_embd=16, block_size=8, rope_base=100.0)
    tokens, mask = torch.zeros(2, 5, dtype=torch.long), torch.tensor([[0, 0, 1, 1, 1], [1] * 5])
    _, layout = model.transformer.wpe(torch.zeros(2, 5, 16), begin_forward(tokens, mask, None))
    angles = layout.positions.float()[..., None] * 100.0 ** -(torch.arange(0, 8, 2) / 8)
    angles = torch.cat((angles, angles), dim=-1)[:, None]
    assert torch.allclose(layout.rotary[0], angles.cos(), atol=1e-6) and torch.allclose(layout.rotary[1], angles.sin())


def test_a_llama_trains_after_generating():
    """The rotary table `generate` makes under inference mode is not the one training multiplies by."""
    torch.manual_seed(0)
    model = get_model("Llama", vocab_size=29, n_layer=1, n_head=2, n_embd=16, block_size=8)
    model.generate(torch.tensor([[1, 2]]), 3, temperature=0.0)
    tokens = torch.randint(0, 29, (2, 8))
    model(tokens, labels=tokens)["loss"].backward()
    assert model.lm_head.weight.grad is not None
