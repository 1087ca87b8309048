"""Model architectures, `get_model`, checkpoint serialization and Hugging Face GPT-2 interop."""

from cleangpt_core.errors import CheckpointError, SequenceTooLongError
from cleangpt_core.model.base import CausalLanguageModel
from cleangpt_core.model.decoder import LearnedPositionDecoder
from cleangpt_core.model.factory import build_config, get_model
from cleangpt_core.model.kv_cache import KVCache
from cleangpt_core.model.serialization import load_model, resolve_checkpoint, save_model

__all__ = [
    "CausalLanguageModel",
    "CheckpointError",
    "KVCache",
    "LearnedPositionDecoder",
    "SequenceTooLongError",
    "build_config",
    "get_model",
    "load_model",
    "resolve_checkpoint",
    "save_model",
]
