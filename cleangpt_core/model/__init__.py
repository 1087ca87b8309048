"""Model architectures and their parts, `get_model`, and a model directory's files (`serialization`).

What a plugin author needs: the decoder and the part classes to build on or reuse, `resolve_parts` (the part
classes a config names, as `get_model` hands them to the decoder), `Linear` (the layer the parts are made of),
the attention layout and key/value cache an attention part works with, `part_options` to read a part's
options from the `PartConfig` it is built from, and `capture` to look at what any part outputs.
"""

from cleangpt_core.config.parts import PartConfig, part_options
from cleangpt_core.errors import CheckpointError, SequenceTooLongError
from cleangpt_core.kernels import onednn_linear
from cleangpt_core.lazy_exports import lazy_exports
from cleangpt_core.model.attention import CausalSelfAttention
from cleangpt_core.model.base import CausalLanguageModel
from cleangpt_core.model.decoder import Decoder
from cleangpt_core.model.factory import BoundPart, PartClasses, build_config, get_model, resolve_parts
from cleangpt_core.model.feedforward import MLP, ReluSquared, SwiGLU
from cleangpt_core.model.kv_cache import AttentionLayout, KVCache, begin_forward
from cleangpt_core.model.linear import Linear
from cleangpt_core.model.norm import LayerNorm, NoNorm, RMSNorm
from cleangpt_core.model.position import ALiBi, LearnedPositions, NoPositions, Rotary
from cleangpt_core.model.residual import ParallelBlock, PostNormBlock, PreNormBlock
from cleangpt_core.model.serialization import load_model, resolve_checkpoint, save_model

__all__ = [
    "MLP",
    "ALiBi",
    "AttentionLayout",
    "BoundPart",
    "CausalLanguageModel",
    "CausalSelfAttention",
    "CheckpointError",
    "Decoder",
    "KVCache",
    "LayerNorm",
    "LearnedPositions",
    "Linear",
    "NoNorm",
    "NoPositions",
    "ParallelBlock",
    "PartClasses",
    "PartConfig",
    "PostNormBlock",
    "PreNormBlock",
    "RMSNorm",
    "ReluSquared",
    "Rotary",
    "SequenceTooLongError",
    "SwiGLU",
    "begin_forward",
    "build_config",
    "get_model",
    "load_model",
    "onednn_linear",
    "part_options",
    "resolve_checkpoint",
    "resolve_parts",
    "save_model",
]

# The capture API (`cleangpt_core.inspection`), where a part author already looks: imported on first use, since
# it imports this package's modules itself.
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "Capture": "cleangpt_core.inspection",
        "capture": "cleangpt_core.inspection",
        "part_names": "cleangpt_core.inspection",
    },
)
