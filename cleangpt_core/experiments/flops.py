"""A run's training compute: C = 6·N·D plus the attention term, in Kaplan et al.'s (2020) convention.

Per training token, the forward pass costs 2 FLOPs (a multiply and an add) per parameter that multiplies the
token's activations, plus the attention scores: QK^T and the weighted sum AV each take ``2·n_ctx·d_attn`` FLOPs
per layer for a query that sees all ``n_ctx`` keys, and a causal query sees ``n_ctx/2`` on average, so the two
together take ``2·n_layer·n_ctx·d_attn`` (Kaplan et al., Table 1). The backward pass costs twice the forward,
so training costs three times the forward:

    C = 6·N·D + 6·n_layer·n_ctx·d_attn·D

with D the training tokens, ``n_ctx`` = ``model.block_size`` (every training window is a full block) and
``d_attn`` = ``model.n_embd`` (the heads' widths sum to it; grouped-query attention shares keys and values but
still scores every query head). PaLM's and nanoGPT's ``6N + 12·n_layer·n_ctx·d_attn`` count the causal half
too; ours is Kaplan's, half that term.

N counts the *non-embedding* parameters, as Kaplan's does: every trainable parameter except the token and
position embedding tables and the output head (tied or not), i.e. the hidden matrices and the gains (norm
gains, biases, scalar gates) by the roles the optimizers use (`cleangpt_core.trainers.optimizers`). A lookup
costs no multiply-adds; the head does cost ``2·n_embd·vocab_size`` per token, but leaving it out (as Kaplan
does) keeps N and C independent of the tokenizer, so a ladder's budgets are known before any data is read.

One N serves both the FLOPs and a ladder's budget (`ladder.rung_tokens`: R tokens per *non-embedding*
parameter). Chinchilla's 20 tokens per parameter counted every parameter, embeddings included, so the
ladder's default of 20 is that ratio only where the head is a small share of the model (at the python-stdlib
record's widths the head is 35 % of the compute at the smallest rung and 14 % at the largest). The calibration
harness (`benchmarks/results/calibration.md`, "Conventions") measured what leaving the head out costs a
multiplier when the loss follows a law in the compute with the head: it chose this convention because that
cost sits inside the multiplier's interval, and because counting the head would need the tokenizer's
vocabulary before any data is read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

    from cleangpt_core.config.model import ModelConfig

FLOPS_FORMULA = "C = 6·N·D + 6·n_layer·n_ctx·d_attn·D (n_ctx = block_size, d_attn = n_embd; causal half counted once)"
N_COUNTS = (
    "N = non-embedding parameters (Kaplan et al. 2020): hidden matrices, norm gains and biases; the token and "
    "position embeddings and the output head (tied or not) are left out"
)
COUNTED_ROLES = ("matrix", "gain")  # of `cleangpt_core.trainers.optimizers.ROLES`


def non_embedding_parameters(model: nn.Module) -> int:
    """N of a built model: the parameters of the roles in `COUNTED_ROLES` (each tensor once, tied ones too)."""
    from cleangpt_core.model.parameter_roles import parameter_roles

    roles = parameter_roles(model)
    return sum(parameter.numel() for parameter in (*roles.matrices, *roles.gains))


def model_parameters(config: ModelConfig) -> int:
    """N of the model `config` describes, without building it: counted on the meta device (no memory, no
    initialisation) at one, two and three blocks, and extended to `n_layer` blocks by the difference, since
    every block adds the same parameters; so a config of any depth is counted at once (a model of 100,000 blocks
    takes minutes to build, even on the meta device). An architecture whose blocks differ in size (the three
    counts not evenly spaced) is counted at its full depth. A model too large for torch to describe (its
    tensors' sizes overflow) raises `ConfigError`."""
    if config.n_layer <= 3:
        return _count(config, config.n_layer)
    one, two, three = (_count(config, layers) for layers in (1, 2, 3))
    if three - two != two - one:
        return _count(config, config.n_layer)
    return one + (config.n_layer - 1) * (two - one)


def _count(config: ModelConfig, layers: int) -> int:
    """N of `config` with `layers` blocks, built on the meta device."""
    import torch

    from cleangpt_core.errors import ConfigError
    from cleangpt_core.model.factory import get_model

    shallow = config if layers == config.n_layer else config.model_copy(update={"n_layer": layers})
    try:
        with torch.device("meta"):
            model = get_model(shallow.model_type, config=shallow)
    except RuntimeError as error:  # "Storage size calculation overflowed": more elements than an int64 counts
        raise ConfigError(f"the model is too large to describe ({' '.join(str(error).split())})") from None
    return non_embedding_parameters(model)


def attention_flops_per_token(n_layer: int, block_size: int, n_embd: int) -> int:
    """The attention term per training token: ``6·n_layer·n_ctx·d_attn`` (forward and backward, causal)."""
    return 6 * n_layer * block_size * n_embd


def training_flops(parameters: int, tokens: int, n_layer: int, block_size: int, n_embd: int) -> int:
    """C of a run that trains a model with `parameters` non-embedding parameters on `tokens` tokens."""
    return (6 * parameters + attention_flops_per_token(n_layer, block_size, n_embd)) * tokens
