"""Vanilla: construction through the registry, the forward contract, initialisation and optimizer groups."""

from __future__ import annotations

import math

import pytest
import torch

from cleangpt_core.config import GPTConfig
from cleangpt_core.errors import ConfigError
from cleangpt_core.model import SequenceTooLongError, get_model

SHAPE = {"vocab_size": 67, "n_layer": 2, "n_head": 4, "n_embd": 32, "block_size": 24}


@pytest.fixture
def model():
    torch.manual_seed(0)
    return get_model("Vanilla", **SHAPE)


def test_the_tutorial_snippet_builds_a_model_and_returns_loss_and_logits():
    config = GPTConfig(model_type="Vanilla", vocab_size=67, n_layer=2, n_head=4, n_embd=32, block_size=24)
    model = get_model(config.model_type, config=config)
    input_ids = torch.randint(0, 67, (3, 24))
    outputs = model(input_ids=input_ids, labels=input_ids)
    assert outputs["logits"].shape == (3, 24, 67)
    assert outputs["loss"].dim() == 0


def test_loss_at_initialisation_is_close_to_uniform_guessing(model):
    input_ids = torch.randint(0, 67, (4, 24))
    loss = model(input_ids, labels=input_ids)["loss"].item()
    assert abs(loss - math.log(67)) < 0.1


def test_unknown_config_field_names_the_nearest_valid_one():
    with pytest.raises(ConfigError, match="n_layer"):
        get_model("Vanilla", n_layers=2)


def test_a_field_of_another_architecture_is_rejected_for_vanilla():
    with pytest.raises(ConfigError, match="use_v"):
        get_model("Vanilla", use_v=True)


def test_config_for_another_model_type_is_an_error():
    with pytest.raises(ConfigError, match="matching"):
        get_model("Vanilla", config=GPTConfig(model_type="SASP"))


def test_invalid_shape_fails_before_building():
    with pytest.raises(ConfigError, match="divisible"):
        get_model("Vanilla", n_embd=30, n_head=4)


def test_model_type_is_matched_case_insensitively(model):
    assert type(get_model("vanilla", **SHAPE)) is type(model)


def test_output_head_is_tied_to_the_token_embedding(model):
    assert model.lm_head.weight is model.transformer.wte.weight


def test_residual_projections_get_scaled_initialisation():
    torch.manual_seed(0)
    model = get_model("Vanilla", vocab_size=67, n_layer=8, n_head=4, n_embd=256, block_size=8)
    expected = 0.02 / math.sqrt(2 * 8)
    assert model.transformer.h[0].mlp.c_proj.weight.std().item() == pytest.approx(expected, rel=0.05)
    assert model.transformer.h[0].attn.c_proj.weight.std().item() == pytest.approx(expected, rel=0.05)
    assert model.transformer.h[0].mlp.c_fc.weight.std().item() == pytest.approx(0.02, rel=0.05)


def test_without_bias_no_layer_has_a_bias():
    model = get_model("Vanilla", **SHAPE, bias=False)
    assert not [name for name, _ in model.named_parameters() if name.endswith("bias")]


def test_padding_and_minus_100_labels_are_ignored_by_the_loss(model):
    input_ids = torch.randint(0, 67, (2, 24))
    mask = torch.ones_like(input_ids)
    mask[1, :5] = 0
    ignored = input_ids.clone()
    ignored[1, :5] = -100
    with_mask = model(input_ids, attention_mask=mask, labels=input_ids)["loss"]
    with_ignore = model(input_ids, attention_mask=mask, labels=ignored)["loss"]
    assert torch.allclose(with_mask, with_ignore)


def test_too_long_input_is_rejected_with_both_lengths(model):
    with pytest.raises(SequenceTooLongError, match=r"length 25.*block_size=24"):
        model(torch.zeros(1, 25, dtype=torch.long))


def test_dropout_is_active_in_training_and_off_in_eval():
    model = get_model("Vanilla", **SHAPE, dropout=0.5)
    input_ids = torch.randint(0, 67, (1, 24))
    model.train()
    assert not torch.equal(model(input_ids)["logits"], model(input_ids)["logits"])
    model.eval()
    assert torch.equal(model(input_ids)["logits"], model(input_ids)["logits"])


def test_optimizer_groups_decay_only_matrices_and_cover_every_parameter_once(model):
    decay, no_decay = model.optimizer_groups(weight_decay=0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() == 2 for p in decay["params"])
    assert all(p.dim() == 1 for p in no_decay["params"])
    grouped = [id(p) for group in (decay, no_decay) for p in group["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters())


def test_parameter_count_leaves_out_position_embeddings_by_default(model):
    total = sum(p.numel() for p in model.parameters())
    assert model.get_num_params(non_embedding=False) == total
    assert model.get_num_params() == total - 24 * 32


def test_a_few_adamw_steps_learn_a_repeating_sequence(model):
    optimizer = torch.optim.AdamW(model.optimizer_groups(0.1), lr=3e-3)
    input_ids = torch.arange(24).remainder(5).unsqueeze(0).repeat(4, 1)
    first = None
    for _ in range(30):
        loss = model(input_ids, labels=input_ids)["loss"]
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < first / 3
