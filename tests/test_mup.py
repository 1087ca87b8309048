"""The maximal-update parametrization (`model.parametrization=mup`): standard at its base width, the width
rules of init, learning rates, logits and attention, the coordinate check, and its record in checkpoints."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from cleangpt_core.cli.main import cli
from cleangpt_core.errors import ConfigError, HFConversionError
from cleangpt_core.experiments.planning import build_plan
from cleangpt_core.huggingface import export_hf
from cleangpt_core.inspection import capture
from cleangpt_core.inspection.coordinate_check import coordinate_check
from cleangpt_core.model import get_model, load_model, save_model
from cleangpt_core.model.parametrization import attention_scale, base_head_dim
from cleangpt_core.testing.architecture import SMALL_MODEL, check_architecture_contract, registered_model_factory
from cleangpt_core.tokenizers import create_tokenizer
from cleangpt_core.trainers import get_optimizer
from cleangpt_core.utils import tinyshakespeare_text

SHAPE = {"vocab_size": 40, "n_layer": 2, "n_head": 4, "block_size": 16}


def mup_model(architecture: str = "Vanilla", width: int = 64, base: int = 32, **fields) -> torch.nn.Module:
    torch.manual_seed(0)
    return get_model(architecture, **SHAPE, n_embd=width, parametrization="mup", mup_base_width=base, **fields)


def losses(model: torch.nn.Module, optimizer: torch.optim.Optimizer, steps: int = 4) -> list[float]:
    tokens = torch.randint(0, SHAPE["vocab_size"], (4, 17), generator=torch.Generator().manual_seed(1))
    seen = []
    for _ in range(steps):
        loss = model(tokens[:, :-1], labels=tokens)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        seen.append(loss.item())
    return seen


@pytest.mark.parametrize("architecture", ["Vanilla", "Llama", "SASP"])
@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_mup_at_its_base_width_trains_to_the_same_losses_as_standard(architecture, optimizer):
    torch.manual_seed(0)
    standard = get_model(architecture, **SHAPE, n_embd=32)
    mup = mup_model(architecture, width=32, base=32)
    assert losses(standard, get_optimizer(optimizer, standard)) == losses(mup, get_optimizer(optimizer, mup))


def test_mup_scales_the_initial_hidden_matrices_by_one_over_root_m_and_leaves_embeddings_and_gains():
    torch.manual_seed(0)
    standard = get_model("Llama", **SHAPE, n_embd=128)
    mup = mup_model("Llama", width=128, base=32)  # m = 4
    for (name, ours), theirs in zip(mup.named_parameters(), standard.parameters(), strict=True):
        factor = 0.5 if name.endswith(("c_attn.weight", "c_fc.weight", "c_proj.weight")) else 1.0
        torch.testing.assert_close(ours, theirs * factor, rtol=0, atol=0, msg=name)


def test_mup_multiplies_the_logits_by_one_over_m():
    model = mup_model(width=128, base=32)
    tokens = torch.randint(0, SHAPE["vocab_size"], (2, 8))
    with capture(model, ["ln_f"]) as seen:
        logits = model(tokens)["logits"]
    torch.testing.assert_close(logits, model.lm_head(seen["ln_f"]) / 4)


def test_mup_scales_attention_scores_by_root_base_head_dim_over_head_dim():
    model = mup_model(width=128, base=32)  # head width 32, base head width 8: scores x sqrt(8)/32
    tokens = torch.randint(0, SHAPE["vocab_size"], (1, 6))
    with capture(model, ["h.0.ln_1"], attention=["h.0.attn"]) as seen:
        model(tokens)
    q, k, _ = model.transformer.h[0].attn.c_attn(seen["h.0.ln_1"]).view(1, 6, 12, 32).transpose(1, 2).split(4, dim=1)
    scores = (q @ k.transpose(-2, -1)) * 8**0.5 / 32
    expected = scores.masked_fill(torch.ones(6, 6, dtype=torch.bool).triu(1), float("-inf")).softmax(-1)
    torch.testing.assert_close(seen.attention["h.0.attn"], expected)


def test_a_ladder_that_grows_the_head_count_keeps_standard_attention_scale_with_mup_base_head_dim():
    model = mup_model(width=128, base=32, mup_base_head_dim=32)
    assert model.mup_base_head_dim == 32 and model.config.head_dim == 32  # sqrt(32)/32: standard's scale


def test_the_default_base_head_width_holds_the_head_count_so_a_ladder_growing_it_must_state_it(tmp_path):
    """The default d0 = mup_base_width / n_head divides by each model's own head count: right while the head
    count is held, wrong for a ladder that grows it (every rung would get another d0). Such a ladder is refused
    before anything trains, and with mup_base_head_dim stated every rung keeps standard's scale."""
    corpus = tmp_path / "text.txt"
    corpus.write_text(tinyshakespeare_text()[:5_000], encoding="utf-8")
    overrides = [
        f"data.dataset={corpus}", "model.n_layer=1", "model.block_size=16", "data.batch_size=2", "device=cpu",
        "schedule.warmup_steps=1", "model.parametrization=mup", "model.mup_base_width=16",
    ]  # fmt: skip
    ladder = ["model.n_embd=16,32,64", "model.n_head=2,4,8"]  # head width 8 at every rung
    with pytest.raises(ConfigError) as error:
        build_plan(tmp_path / "a", models=["Vanilla"], overrides=overrides, ladder=ladder, max_tokens=64)
    assert len(str(error.value).splitlines()) == 1 and "set model.mup_base_head_dim" in str(error.value)
    plan = build_plan(tmp_path / "b", models=["Vanilla"], overrides=[*overrides, "model.mup_base_head_dim=8"],
                      ladder=ladder, max_tokens=64)  # fmt: skip
    for run in plan.runs:
        model = run.load().model
        assert attention_scale(model.head_dim, base_head_dim(model)) is None  # 1/sqrt(8): standard's


def test_adamw_under_mup_gives_hidden_matrices_lr_over_m_and_the_rest_the_lr():
    model = mup_model(width=128, base=32)
    optimizer = get_optimizer("adamw", model, lr=1e-2)
    matrices = {id(p) for name, p in model.named_parameters() if name.endswith(("c_attn.weight", "c_proj.weight"))}
    matrices |= {id(p) for name, p in model.named_parameters() if name.endswith("c_fc.weight")}
    assert optimizer.param_groups[0]["lr"] == 1e-2  # the group the trainer logs
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            assert group["lr"] == (1e-2 / 4 if id(parameter) in matrices else 1e-2)


def test_adamw_under_mup_scales_the_hidden_matrices_weight_decay_by_m_so_the_decay_per_step_holds():
    """mup.MuAdamW's rule: weight_decay x m where lr / m, so lr x wd (AdamW's decay per step) is the base's."""
    model = mup_model(width=128, base=32)  # m = 4
    optimizer = get_optimizer("adamw", model, lr=1e-2, weight_decay=0.1)
    hidden = ("c_attn.weight", "c_proj.weight", "c_fc.weight")
    matrices = {id(p) for name, p in model.named_parameters() if name.endswith(hidden)}
    for group in optimizer.param_groups:
        if {id(p) for p in group["params"]} <= matrices:
            assert (group["lr"], group["weight_decay"]) == (1e-2 / 4, 0.1 * 4)
        else:
            assert group["weight_decay"] in (0.1, 0.0)  # embeddings decayed, gains not, both unscaled


def decay_per_step(width: int, optimizer: str, **options) -> float:
    """The factor one step with zero gradients (decay alone) multiplies a hidden matrix by."""
    model = mup_model(width=width, base=32)
    built = get_optimizer(optimizer, model, **options)
    for parameter in model.parameters():
        parameter.grad = torch.zeros_like(parameter)
    matrix = model.transformer.h[0].mlp.c_fc.weight
    before = matrix.detach().clone()
    built.step()
    return (matrix.detach() / before).mean().item()


@pytest.mark.parametrize(
    ("optimizer", "options"),
    [
        ("adamw", {"lr": 1e-2, "weight_decay": 0.5}),
        ("muon", {"lr": 0.02, "weight_decay": 0.5, "adjust_lr": "match_rms_adamw"}),
        ("muon", {"lr": 0.02, "weight_decay": 0.5, "adjust_lr": "original"}),
    ],
)
def test_under_mup_a_hidden_matrix_decays_by_the_same_factor_per_step_at_every_width(optimizer, options):
    at_base = decay_per_step(32, optimizer, **options)
    assert at_base < 1.0
    for width in (64, 128):
        assert decay_per_step(width, optimizer, **options) == pytest.approx(at_base, rel=1e-6)


@pytest.mark.parametrize(("optimizer", "key"), [("adamw", "eps"), ("muon", "adamw_eps")])
def test_under_mup_every_adam_group_gets_epsilon_over_m_and_the_base_width_keeps_it(optimizer, key):
    wide = get_optimizer(optimizer, mup_model(width=128, base=32), **{key: 1e-6})
    base = get_optimizer(optimizer, mup_model(width=32, base=32), **{key: 1e-6})
    adam_groups = lambda built: [g for g in built.param_groups if "eps" in g and "ns_steps" not in g]  # noqa: E731
    assert {group["eps"] for group in adam_groups(wide)} == {1e-6 / 4}
    assert {group["eps"] for group in adam_groups(base)} == {1e-6}


def first_update_rms(width: int, eps: float) -> float:
    """m x the RMS of an MLP matrix's first AdamW step (Adam's normalised step, width-free under muP)."""
    model = mup_model(width=width, base=32)
    optimizer = get_optimizer("adamw", model, lr=1e-2, eps=eps, weight_decay=0.0)
    matrix = model.transformer.h[0].mlp.c_fc.weight
    before = matrix.detach().clone()
    losses(model, optimizer, steps=1)
    return (matrix.detach() - before).pow(2).mean().sqrt().item() * width / 32


def test_under_mup_adams_epsilon_takes_the_same_share_of_the_step_at_every_width():
    """Every gradient shrinks as 1/m under muP, so an epsilon that matters at the base width (here of the order
    of the gradients) would damp the wide model's steps if it were held fixed: scaled by 1/m it does not."""
    at_base = first_update_rms(32, eps=1e-3)
    assert first_update_rms(256, eps=1e-3) == pytest.approx(at_base, rel=0.1)


def test_the_models_own_optimizer_groups_carry_mups_epsilon():
    model = mup_model(width=128, base=32)
    assert {group["eps"] for group in model.optimizer_groups(0.1, lr=1e-2, eps=1e-6)} == {1e-6 / 4}
    assert {group["eps"] for group in model.optimizer_groups(0.1, lr=1e-2)} == {1e-8 / 4}  # torch's default
    standard = get_model("Vanilla", **SHAPE, n_embd=128)
    assert all("eps" not in group for group in standard.optimizer_groups(0.1, eps=1e-6))


def test_the_models_own_optimizer_groups_follow_mup_and_ask_for_the_lr_it_needs():
    """`model.optimizer_groups`, nanoGPT's way to build an optimizer by hand, gives the trainers' groups: under
    muP the hidden matrices at lr/m. Without the lr it cannot set that rate, and says so in one line."""
    model = mup_model(width=128, base=32)
    with pytest.raises(ConfigError, match="pass lr="):
        model.optimizer_groups(0.1)
    by_hand = torch.optim.AdamW(model.optimizer_groups(0.1, lr=1e-2), lr=1e-2)
    trainer = get_optimizer("adamw", model, lr=1e-2, weight_decay=0.1)
    assert [(group["lr"], group["weight_decay"], group["params"]) for group in by_hand.param_groups] == [
        (group["lr"], group["weight_decay"], group["params"]) for group in trainer.param_groups
    ]
    assert sorted({group["lr"] for group in by_hand.param_groups}) == [1e-2 / 4, 1e-2]


@pytest.mark.parametrize(("adjust_lr", "factor"), [("original", 1.0), ("match_rms_adamw", 0.5)])
def test_muon_under_mup_scales_hidden_lr_by_its_spectral_rule_and_keeps_adamw_rates(adjust_lr, factor):
    optimizer = get_optimizer("muon", mup_model(width=128, base=32), lr=0.02, adjust_lr=adjust_lr, adamw_lr=3e-3)
    muon, adamw = optimizer.optimizers
    assert {group["lr"] for group in muon.param_groups} == {0.02 * factor}
    assert {group["lr"] for group in adamw.param_groups} == {3e-3}


def test_an_optimizer_without_a_mup_rule_is_refused_with_one_line():
    with pytest.raises(ConfigError) as error:
        get_optimizer("sgd", mup_model())
    assert str(error.value).splitlines() == [
        "optimizer 'sgd' does not apply muP's learning rates (model.parametrization=mup); use adamw or muon, "
        "or parametrization=standard"
    ]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"parametrization": "mup"}, "parametrization='mup' needs mup_base_width"),
        ({"parametrization": "mup", "mup_base_width": 30}, "mup_base_width=30 is not divisible by n_head=4"),
        ({"parametrization": "mup", "mup_base_width": 0}, "mup_base_width"),
        ({"parametrization": "mupp", "mup_base_width": 32}, "parametrization"),
    ],
)
def test_bad_mup_settings_are_one_line_errors_naming_the_field(fields, message):
    with pytest.raises(ConfigError) as error:
        get_model("Vanilla", **SHAPE, n_embd=64, **fields)
    assert len(str(error.value).splitlines()) == 1 and message in str(error.value)


def test_bad_mup_settings_stop_train_before_anything_is_written(tmp_path):
    result = CliRunner().invoke(
        cli, ["train", "--set", "model.parametrization=mup", "--set", f"output.dir={tmp_path / 'run'}"]
    )
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1 and "needs mup_base_width" in result.output
    assert not (tmp_path / "run").exists()


def test_a_saved_mup_model_loads_back_with_its_parametrization_and_logits(tmp_path):
    model = mup_model("Llama", width=64, base=32, mup_base_head_dim=4)
    save_model(model, tmp_path / "model")
    saved = json.loads((tmp_path / "model" / "config.json").read_text())
    assert (saved["parametrization"], saved["mup_base_width"], saved["mup_base_head_dim"]) == ("mup", 32, 4)
    loaded = load_model(tmp_path / "model")
    tokens = torch.randint(0, SHAPE["vocab_size"], (2, 8))
    torch.testing.assert_close(loaded(tokens)["logits"], model(tokens)["logits"], rtol=0, atol=0)
    assert loaded.output_multiplier == 0.5


def test_hf_export_refuses_mup_away_from_its_base_width_with_one_line(tmp_path):
    tokenizer = create_tokenizer("character").fit("abcdefgh")
    model = get_model(
        "Vanilla", **{**SHAPE, "vocab_size": tokenizer.vocab_size}, n_embd=64, parametrization="mup", mup_base_width=32
    )
    save_model(model, tmp_path / "ckpt")
    tokenizer.save_pretrained(tmp_path / "ckpt" / "tokenizer")
    with pytest.raises(HFConversionError) as error:
        export_hf(tmp_path / "ckpt", tmp_path / "hf")
    assert str(error.value).splitlines() == [
        "GPT-2 has no muP output multiplier or attention scale: a model with parametrization=mup exports only at "
        "its mup_base_width"
    ]
    assert not (tmp_path / "hf").exists()


def coordinate_rms(parametrization: str, optimizer: str):
    def build(width: int) -> torch.nn.Module:
        return get_model(
            "Vanilla", vocab_size=64, n_layer=2, n_head=4, n_embd=width, block_size=8,
            parametrization=parametrization, mup_base_width=64,
        )  # fmt: skip

    options = {"lr": 1e-2} if optimizer == "adamw" else {"lr": 2e-2, "adamw_lr": 5e-3}
    return coordinate_check(
        build, lambda model: get_optimizer(optimizer, model, **options), [64, 128, 256, 512],
        steps=3, batch_size=4, length=8,
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_coordinate_check_part_outputs_stay_within_2x_across_widths_under_mup_and_grow_under_standard(optimizer):
    mup, standard = coordinate_rms("mup", optimizer), coordinate_rms("standard", optimizer)
    for part in ("embedding", "attention", "mlp", "logits"):
        assert mup.spread(part) <= 2.0, (part, mup.rms[part])
    for part in ("attention", "mlp", "logits"):
        assert standard.growth(part) > 2.0, (part, standard.rms[part])


@pytest.mark.parametrize("architecture", ["Vanilla", "Llama", "SASP"])
def test_a_mup_model_keeps_the_architecture_contract(architecture):
    # cached decoding, padding, causality and save/load all see the output multiplier and attention scale
    width = SMALL_MODEL["n_embd"]
    factory = registered_model_factory(architecture, parametrization="mup", mup_base_width=width // 2)
    check_architecture_contract(factory)
