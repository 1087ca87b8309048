"""How one model trains on the processes of a run: as it is, as DDP replicas, or as FSDP2 shards.

A trainer asks this module three things. `prepare_model` applies the config's speed and memory options
(activation checkpointing per block, ``torch.compile``) and then the strategy: nothing in one process,
DistributedDataParallel (every rank keeps the whole model and averages gradients), or FSDP2
(``fully_shard`` on every block and then on the whole model, so each rank keeps 1/N of the weights, the
gradients and the optimizer state, and gathers a block's weights only while it computes). `gradient_sync`
turns gradient communication off for the micro-batches before the last of an accumulation group. And the
full-state functions gather and scatter unsharded state dicts with `torch.distributed.checkpoint.state_dict`,
so a checkpoint is the same safetensors + JSON whatever the strategy and the number of processes, and any
strategy resumes it.

Which strategy by default (``strategy: auto``): one process trains the model as it is; several take DDP,
unless on a GPU the replicated training state (weights, gradients and AdamW's two moments, 16 bytes per
parameter in fp32) would fill more than half of the device, where FSDP2 is the only one that fits. DDP
stays the default whenever the model fits because it moves less data: one all-reduce of the gradients per
step, overlapped with the backward pass, where FSDP2 all-gathers the weights in the forward and again in the
backward and reduce-scatters the gradients (about 1.5 times the traffic) to save memory.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.fsdp import FSDPModule, fully_shard

from cleangpt_core.distributed.process_group import DistributedContext
from cleangpt_core.errors import CheckpointError, ConfigError
from cleangpt_core.model.serialization import read_checkpoint_weights

logger = logging.getLogger(__name__)

Strategy = Literal["none", "ddp", "fsdp"]
REPLICA_BYTES_PER_PARAMETER = 16  # fp32 weight + gradient + AdamW's exp_avg and exp_avg_sq
REPLICA_MEMORY_FRACTION = 0.5  # leave the other half of the GPU for activations
_FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)  # unsharded, on the CPU, on rank 0 only


def choose_strategy(requested: str, context: DistributedContext, device: torch.device, parameters: int) -> Strategy:
    """The strategy a run uses: ``none`` in one process, else the requested one (``auto``: see the module)."""
    if not context.enabled:
        if requested == "fsdp":
            logger.warning("trainer.strategy='fsdp' in one process: nothing to shard, the model trains as it is")
        return "none"
    if requested in ("ddp", "fsdp"):
        return requested  # type: ignore[return-value]
    if device.type == "cuda":
        memory = torch.cuda.get_device_properties(device).total_memory
        if parameters * REPLICA_BYTES_PER_PARAMETER > memory * REPLICA_MEMORY_FRACTION:
            return "fsdp"
    return "ddp"


def find_blocks(model: nn.Module) -> list[nn.Module]:
    """The model's stack of repeated blocks: of the ModuleLists whose members share one class, the one that
    holds the most parameters (``transformer.h`` in GPT-2's layout), so no architecture has to name it."""
    stacks = [
        list(module)
        for module in model.modules()
        if isinstance(module, nn.ModuleList) and len(module) > 0 and len({type(child) for child in module}) == 1
    ]
    if not stacks:
        raise ConfigError(
            f"{type(model).__name__} has no nn.ModuleList of blocks; trainer.strategy='fsdp' and "
            "trainer.activation_checkpointing need one (keep the blocks in an nn.ModuleList)"
        )
    return max(stacks, key=lambda blocks: sum(p.numel() for block in blocks for p in block.parameters()))


def prepare_model(
    model: nn.Module,
    strategy: Strategy,
    device: torch.device,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    activation_checkpointing: bool = False,
    compile_model: bool = False,
) -> nn.Module:
    """`model` on `device` with the options and the strategy applied (in place where torch allows it).

    Names of parameters never change (no wrapper prefixes), so state dicts and checkpoints are the same
    whatever was applied; only DDP returns a wrapper, whose ``.module`` is the model. FSDP2 puts new
    (sharded) parameters in place of the model's, so `optimizer`, built over the old ones and not yet
    stepped, is pointed at the new ones.
    """
    names = {id(parameter): name for name, parameter in model.named_parameters()}
    if strategy == "fsdp" and optimizer is not None:
        _check_can_follow_sharding(optimizer, names)
    model = model.to(device)
    if activation_checkpointing:
        # composable checkpointing keeps parameter names; the blocks' activations are recomputed in the
        # backward pass instead of being stored (about a third more compute for far less memory)
        from torch.distributed._composable import checkpoint

        for block in find_blocks(model):
            checkpoint(block)
    if compile_model:
        # nn.Module.compile compiles in place (no `_orig_mod.` prefix); under FSDP2 each block is compiled
        # on its own so the graph breaks fall at the block boundaries where FSDP gathers weights
        for part in find_blocks(model) if strategy == "fsdp" else [model]:
            part.compile()
    if strategy == "ddp":
        device_ids = [device.index] if device.type == "cuda" and device.index is not None else None
        return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    if strategy == "fsdp":
        for block in find_blocks(model):
            fully_shard(block)
        fully_shard(model)  # the embeddings, the final norm and the (tied) output head
        if optimizer is not None:
            sharded = dict(model.named_parameters())
            for group in optimizer.param_groups:
                group["params"] = [sharded[names[id(parameter)]] for parameter in group["params"]]
    return model


def _check_can_follow_sharding(optimizer: torch.optim.Optimizer, names: dict[int, str]) -> None:
    """Fail before anything is sharded if `optimizer` cannot be moved onto the sharded parameters."""
    if optimizer.state:
        raise ConfigError(
            "the optimizer has already taken steps; trainer.strategy='fsdp' replaces the model's parameters, "
            "so build the trainer with a fresh optimizer (resume from a checkpoint to continue a run)"
        )
    if any(id(parameter) not in names for group in optimizer.param_groups for parameter in group["params"]):
        raise ConfigError(
            "the optimizer holds tensors that are not parameters of the model; trainer.strategy='fsdp' can "
            "only shard an optimizer built over model.parameters() (or the model's parameter groups)"
        )


def gradient_sync(model: nn.Module, enabled: bool) -> AbstractContextManager[Any]:
    """A context in which backward passes communicate gradients (`enabled`) or only accumulate them."""
    if enabled:
        return nullcontext()
    if isinstance(model, nn.parallel.DistributedDataParallel):
        return model.no_sync()
    if isinstance(model, FSDPModule):
        return _fsdp_no_sync(model)
    return nullcontext()


@contextmanager
def _fsdp_no_sync(model: FSDPModule) -> Iterator[None]:
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


def gradient_scaler(strategy: Strategy, device: torch.device) -> torch.amp.GradScaler:
    """fp16's loss scaler; under FSDP2 the sharded one, which agrees across ranks on skipping a step (each
    rank sees only its shard's gradients, so an overflow on one rank must stop all of them)."""
    if strategy == "fsdp":
        from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler

        return ShardedGradScaler(device.type)
    return torch.amp.GradScaler(device.type)


def tied_names(model: nn.Module) -> list[list[str]]:
    """The names of each parameter that several modules share (``transformer.wte.weight``, ``lm_head.weight``)."""
    names: dict[int, list[str]] = {}
    for name, parameter in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(parameter), []).append(name)
    return [group for group in names.values() if len(group) > 1]


def _tie(weights: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """`weights` with every name of a shared parameter given the one tensor that is there under any of them."""
    weights = dict(weights)
    for group in tied_names(model):
        present = [name for name in group if name in weights]
        if present:
            weights.update(dict.fromkeys(group, weights[present[0]]))
    return weights


def full_model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every weight, unsharded and on the CPU, on rank 0 ({} on the others); all ranks must call it.

    The names of a shared parameter hold one tensor, so the file stores it once (as `save_model` does).
    """
    state = get_model_state_dict(model, options=_FULL)
    # a gathered tensor may be a view into the buffer of its whole FSDP group; safetensors stores a tensor
    # only if it owns its storage
    owned = {name: _owning(tensor) for name, tensor in state.items()}
    return _tie(owned, model) if owned else owned


def _owning(tensor: torch.Tensor) -> torch.Tensor:
    return tensor if tensor.untyped_storage().nbytes() == tensor.nbytes else tensor.clone()


def load_checkpoint_weights(model: nn.Module, directory: Path) -> None:
    """Load a checkpoint directory's full weights into `model`, each rank keeping its own shard.

    Every rank reads the file (the run directory is on a filesystem they share, as torchrun's rank 0
    writing it assumes); a shared parameter stored under one of its names is given all of them.
    """
    weights = _tie(read_checkpoint_weights(directory), model)
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(weights)), sorted(set(weights) - expected)
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {directory} does not fit this model: missing {missing[:5]}, unexpected {unexpected[:5]}; "
            "resume with the model config the run was started with"
        )
    set_model_state_dict(model, weights, options=StateDictOptions(full_state_dict=True))


def _parameter_names(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """The names of the optimizer's parameters in its own order (torch numbers them 0, 1, ... this way)."""
    names = {id(parameter): name for name, parameter in model.named_parameters()}
    return [names[id(parameter)] for group in optimizer.param_groups for parameter in group["params"]]


def full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer's state as an unsharded optimizer's ``state_dict()`` (parameters numbered), on rank 0.

    All ranks must call it. The numbered form is what a checkpoint holds, so it does not depend on the
    strategy that wrote it, and `torch.optim.Optimizer.load_state_dict` reads it for an unsharded model.
    """
    state = get_optimizer_state_dict(model, optimizer, options=_FULL)
    if not state:
        return {}
    number = {name: index for index, name in enumerate(_parameter_names(model, optimizer))}
    return {
        "state": {number[name]: value for name, value in state["state"].items()},
        "param_groups": [
            {**group, "params": [number[name] for name in group["params"]]} for group in state["param_groups"]
        ],
    }


def load_full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load what `full_optimizer_state` returned (or a plain ``state_dict()``), sharded as the model is."""
    names = _parameter_names(model, optimizer)
    saved = [index for group in state["param_groups"] for index in group["params"]]
    if sorted(saved) != list(range(len(names))):
        raise CheckpointError(
            f"the checkpoint's optimizer state covers {len(saved)} parameters, this optimizer {len(names)}; "
            "resume with the model and optimizer the run was started with"
        )
    by_name = {
        "state": {names[index]: value for index, value in state["state"].items()},
        "param_groups": [
            {**group, "params": [names[index] for index in group["params"]]} for group in state["param_groups"]
        ],
    }
    set_optimizer_state_dict(model, optimizer, by_name, options=StateDictOptions(full_state_dict=True))


class GatheredModel(nn.Module):
    """A sharded model's stand-in when rank 0 writes it: the model's config and its gathered full weights.

    Writing a model directory reads ``model.config`` and ``model.state_dict()``; this answers both without
    holding a second copy of the model.
    """

    def __init__(self, model: nn.Module, weights: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.config = getattr(model, "config", None)
        self._weights = weights

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:  # type: ignore[override]
        """The gathered weights (tied aliases share one tensor)."""
        return self._weights
