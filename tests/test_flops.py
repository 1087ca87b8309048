"""A run's training FLOPs (`cleangpt_core.experiments.flops`) against counts made by hand for two shapes."""

from __future__ import annotations

from cleangpt_core.config.experiment import load_experiment_config
from cleangpt_core.experiments.flops import attention_flops_per_token, model_parameters, training_flops


def test_vanilla_non_embedding_parameters_match_a_hand_count():
    d, layers = 64, 2
    config = load_experiment_config(None, [f"model.n_embd={d}", "model.n_head=2", f"model.n_layer={layers}"]).model
    # per block: ln_1 and ln_2 (gain + bias: 4d), qkv (3d² + 3d), its projection (d² + d), the MLP's d→4d→d
    # (8d² + 5d): 12d² + 13d; then the final LayerNorm's 2d. No wte, wpe or (tied) head.
    assert model_parameters(config) == layers * (12 * d * d + 13 * d) + 2 * d == 100_096


def test_llama_non_embedding_parameters_match_a_hand_count():
    d, heads, kv_heads, layers = 64, 4, 2, 3
    config = load_experiment_config(
        None,
        [
            "model.model_type=Llama",
            f"model.n_embd={d}",
            f"model.n_head={heads}",
            f"model.n_layer={layers}",
            f"model.attention.n_kv_head={kv_heads}",
        ],
    ).model
    head_dim = d // heads
    qkv = d * (d + 2 * kv_heads * head_dim)  # queries d wide, keys and values kv_heads·head_dim each
    hidden = 192  # SwiGLU's 8d/3 = 170.7, rounded up to a multiple of 32
    block = d + qkv + d * d + d + 3 * d * hidden  # two RMSNorm gains, attention, gate+up and down projections
    # the untied head (vocab × d) is left out like the embedding; the final RMSNorm's gain is in
    assert model_parameters(config) == layers * block + d == 3 * (64 + 8192 + 4096 + 64 + 36_864) + 64


def test_training_flops_are_six_n_d_plus_the_causal_attention_term():
    # shape 1: N = 100,096 (the Vanilla above), 2 layers of context 64 and width 64, 10,000 tokens
    assert attention_flops_per_token(2, 64, 64) == 6 * 2 * 64 * 64
    assert training_flops(100_096, 10_000, 2, 64, 64) == 6 * 100_096 * 10_000 + 49_152 * 10_000 == 6_497_280_000
    # shape 2: GPT-2 small's 85M non-embedding parameters, 12 layers, 1024 context, width 768, 1M tokens
    assert training_flops(84_934_656, 1_000_000, 12, 1024, 768) == (509_607_936 + 56_623_104) * 1_000_000
