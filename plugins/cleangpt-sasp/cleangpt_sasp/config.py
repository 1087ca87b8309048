"""SASP's configuration schema (pydantic only, so registering the plugin never imports torch)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from cleangpt_core.config import ModelConfig, StrictModel


class ShapedAttentionOptions(StrictModel):
    """The options of the `shaped` attention part (also fields of `SASPConfig`)."""

    use_v: bool = Field(False, description="value matrices in every layer, as X(I + W_V) with W_V zero at init")
    use_proj: bool = Field(False, description="projection matrices in every layer, as Y(I + W_P), W_P zero at init")
    first_layer_value: bool = Field(
        True, description="keep a value matrix X(I + W_V) in the first layer even without use_v"
    )


class SkiplessOptions(StrictModel):
    """The options of the `skipless_parallel` residual part (also fields of `SASPConfig`)."""

    beta_sa: float = Field(1.0, description="initial weight of the attention sub-block (trainable)")
    beta_ff: float = Field(0.1, description="initial weight of the MLP sub-block (trainable)")


class SASPConfig(ModelConfig, ShapedAttentionOptions, SkiplessOptions):
    """The shared model fields plus the options of the simplified parallel block (defaults: the paper's):
    the shaped attention's and the block's options, the norm and the MLP's activation."""

    model_type: str = Field("SASP", description="registered architecture name")
    norm: Literal["rms", "layer", "none"] = Field("rms", description="normalisation before the parallel sub-blocks")
    activation: Literal["relu", "gelu"] = Field("relu", description="MLP non-linearity")
