"""Registers the built-in decoder parts: attention, feed-forward, norms, position encodings, residual wirings."""

from cleangpt_core.config import parts
from cleangpt_core.plugin_api import PLUGIN_API_VERSION, Component, hookimpl

CLEANGPT_PLUGIN_API = PLUGIN_API_VERSION

_MODEL = "cleangpt_core.model"


@hookimpl
def cleangpt_register_attention() -> list[Component]:
    """Causal multi-head attention with grouped-query heads."""
    return [
        Component(
            name="causal",
            kind="attention",
            summary="causal multi-head attention, fused SDPA; grouped-query (n_kv_head), optional QK-norm",
            target=f"{_MODEL}.attention:CausalSelfAttention",
            config_schema=parts.CausalAttentionOptions,
            aliases=("mha", "gqa"),
        )
    ]


@hookimpl
def cleangpt_register_feedforward() -> list[Component]:
    """GELU MLP, SwiGLU and ReLU squared."""
    return [
        Component(
            name="gelu",
            kind="feedforward",
            summary="GPT-2's MLP: 4x expansion, tanh-approximated GELU",
            target=f"{_MODEL}.feedforward:MLP",
            config_schema=parts.MLPOptions,
            aliases=("mlp",),
        ),
        Component(
            name="swiglu",
            kind="feedforward",
            summary="Llama's gated MLP: silu(x W_gate) * (x W_up), hidden 2/3 of 4x rounded up",
            target=f"{_MODEL}.feedforward:SwiGLU",
            config_schema=parts.SwiGLUOptions,
        ),
        Component(
            name="relu2",
            kind="feedforward",
            summary="Primer's MLP: 4x expansion, squared ReLU",
            target=f"{_MODEL}.feedforward:ReluSquared",
            config_schema=parts.MLPOptions,
            aliases=("relu_squared",),
        ),
    ]


@hookimpl
def cleangpt_register_norms() -> list[Component]:
    """LayerNorm, RMSNorm and none."""
    return [
        Component(
            name="layernorm",
            kind="norm",
            summary="LayerNorm, with a bias when the model's `bias` is on",
            target=f"{_MODEL}.norm:LayerNorm",
            config_schema=parts.NormOptions,
            aliases=("layer",),
        ),
        Component(
            name="rmsnorm",
            kind="norm",
            summary="RMSNorm: scale by the root mean square, no centring, no bias",
            target=f"{_MODEL}.norm:RMSNorm",
            config_schema=parts.NormOptions,
            aliases=("rms",),
        ),
        Component(name="none", kind="norm", summary="no normalisation", target=f"{_MODEL}.norm:NoNorm"),
    ]


@hookimpl
def cleangpt_register_positions() -> list[Component]:
    """Learned, rotary, ALiBi and no position encoding."""
    return [
        Component(
            name="learned",
            kind="position",
            summary="learned absolute position embeddings added to the tokens (GPT-2)",
            target=f"{_MODEL}.position:LearnedPositions",
        ),
        Component(
            name="rotary",
            kind="position",
            summary="rotary position embedding on queries and keys (RoPE, Su et al. 2021)",
            target=f"{_MODEL}.position:Rotary",
            config_schema=parts.RotaryOptions,
            aliases=("rope",),
        ),
        Component(
            name="alibi",
            kind="position",
            summary="linear attention biases by distance, one slope per head (Press et al. 2022)",
            target=f"{_MODEL}.position:ALiBi",
        ),
        Component(
            name="none",
            kind="position",
            summary="no position encoding (NoPE): the causal mask alone tells order",
            target=f"{_MODEL}.position:NoPositions",
            aliases=("nope",),
        ),
    ]


@hookimpl
def cleangpt_register_residuals() -> list[Component]:
    """Pre-norm, parallel and post-norm blocks."""
    return [
        Component(
            name="pre_norm",
            kind="residual",
            summary="x + attn(norm(x)), then x + mlp(norm(x)) (GPT-2, Llama)",
            target=f"{_MODEL}.residual:PreNormBlock",
            aliases=("prenorm", "sequential"),
        ),
        Component(
            name="parallel",
            kind="residual",
            summary="x + attn(norm(x)) + mlp(norm(x)), one shared norm (GPT-J, PaLM)",
            target=f"{_MODEL}.residual:ParallelBlock",
        ),
        Component(
            name="post_norm",
            kind="residual",
            summary="norm(x + attn(x)), then norm(x + mlp(x)) (the original Transformer)",
            target=f"{_MODEL}.residual:PostNormBlock",
            aliases=("postnorm",),
        ),
    ]
