"""Registers the SASP architecture, and its shaped attention and skipless parallel block as decoder parts
(light: the model module is imported only when used)."""

from cleangpt_core.plugin_api import Component, hookimpl
from cleangpt_sasp.config import SASPConfig, ShapedAttentionOptions, SkiplessOptions

CLEANGPT_PLUGIN_API = "1.3"


@hookimpl
def cleangpt_register_architectures() -> list[Component]:
    """SASP: shaped attention and MLP in parallel, no skip connections (He & Hofmann, 2024)."""
    return [
        Component(
            name="SASP",
            kind="architecture",
            summary="simplified parallel block: shaped attention + MLP, no skips, no value/projection",
            target="cleangpt_sasp.model:SASPTransformerModel",
            config_schema=SASPConfig,
            aliases=("SAS-P",),
        )
    ]


@hookimpl
def cleangpt_register_attention() -> list[Component]:
    """SASP's shaped attention, for any preset: --set model.attention=shaped."""
    return [
        Component(
            name="shaped",
            kind="attention",
            summary="shaped attention: alpha I + beta softmax(QK^T) - gamma C, identity at init (He & Hofmann)",
            target="cleangpt_sasp.model:ShapedAttention",
            config_schema=ShapedAttentionOptions,
        )
    ]


@hookimpl
def cleangpt_register_residuals() -> list[Component]:
    """SASP's block wiring, for any preset: --set model.residual=skipless_parallel."""
    return [
        Component(
            name="skipless_parallel",
            kind="residual",
            summary="beta_SA attn(norm(x)) + beta_FF mlp(norm(x)), no skip connection (He & Hofmann)",
            target="cleangpt_sasp.model:SkiplessParallelBlock",
            config_schema=SkiplessOptions,
        )
    ]
