"""Configuration schemas (pydantic v2) and experiment-config loading."""

from cleangpt_core.config.base import StrictModel, format_validation_error, validate_config
from cleangpt_core.config.experiment import (
    ComponentSection,
    DataConfig,
    ExperimentConfig,
    OptimizerSection,
    OutputConfig,
    SamplingSection,
    ScheduleSection,
    TokenizerSection,
    TrainerSection,
    apply_overrides,
    load_experiment_config,
    read_config_file,
    resolve_experiment,
)
from cleangpt_core.config.model import DecoderConfig, GPTConfig, LlamaConfig, ModelConfig, VanillaConfig
from cleangpt_core.config.parts import PartChoice

__all__ = [
    "ComponentSection",
    "DataConfig",
    "DecoderConfig",
    "ExperimentConfig",
    "GPTConfig",
    "LlamaConfig",
    "ModelConfig",
    "OptimizerSection",
    "OutputConfig",
    "PartChoice",
    "SamplingSection",
    "ScheduleSection",
    "StrictModel",
    "TokenizerSection",
    "TrainerSection",
    "VanillaConfig",
    "apply_overrides",
    "format_validation_error",
    "load_experiment_config",
    "read_config_file",
    "resolve_experiment",
    "validate_config",
]
