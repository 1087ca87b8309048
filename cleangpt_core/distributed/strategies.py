"""How one model trains on the processes of a run: as it is, as DDP replicas, or as FSDP2 shards.

A trainer asks this module four things. `prepare_model` applies the config's speed and memory options
(activation checkpointing per block, ``torch.compile``) and then the strategy: nothing in one process,
DistributedDataParallel (every rank keeps the whole model and averages gradients), or FSDP2
(``fully_shard`` on every block and then on the whole model, so each rank keeps 1/N of the weights, the
gradients and the optimizer state, and gathers a block's weights only while it computes; in a bf16 run it
gathers them in bf16 and reduces the gradients in fp32, `fsdp_precision`). `gradient_sync` turns gradient
communication off for the micro-batches before the last of an accumulation group. The full-state functions
gather and scatter unsharded state dicts (what a checkpoint of an unsharded run holds, written by rank 0);
the sharded-state functions hand each rank's own shards to a sharded checkpoint and back
(`cleangpt_core.checkpoints.sharded`), so that no rank ever holds the whole state. Either kind of checkpoint
resumes under any strategy and number of processes.

Which strategy by default (``strategy: auto``): one process trains the model as it is; several take DDP,
unless on a GPU the replicated training state (weights, gradients and AdamW's two moments, 16 bytes per
parameter in fp32) would fill more than half of the device, where FSDP2 is the only one that fits. DDP
stays the default whenever the model fits because it moves less data: one all-reduce of the gradients per
step, overlapped with the backward pass, where FSDP2 all-gathers the weights in the forward and again in the
backward and reduce-scatters the gradients (about 1.5 times the traffic) to save memory.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any, Literal

import torch
import torch.utils.checkpoint
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard

from cleangpt_core.distributed.process_group import DistributedContext
from cleangpt_core.errors import CheckpointError, ConfigError
from cleangpt_core.model.serialization import read_checkpoint_weights

logger = logging.getLogger(__name__)

Strategy = Literal["none", "ddp", "fsdp"]
REPLICA_BYTES_PER_PARAMETER = 16  # fp32 weight + gradient + AdamW's exp_avg and exp_avg_sq
REPLICA_MEMORY_FRACTION = 0.5  # leave the other half of the GPU for activations
_FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)  # unsharded, on the CPU, on rank 0 only
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


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


def fsdp_precision(param_dtype: str, reduce_dtype: str, precision: torch.dtype | None) -> MixedPrecisionPolicy:
    """FSDP2's mixed precision (of the blocks and the whole model alike), from the options ``fsdp_param_dtype``
    and ``fsdp_reduce_dtype`` of a run computing in `precision` (its autocast dtype, None for fp32).

    param_dtype ``auto``: bf16 when the run computes in bf16 autocast, so the weights are all-gathered (and the
    gradients computed) in bf16, half of fp32's traffic, while the sharded weights and the optimizer stay fp32.
    As in torchtitan's FSDP2 recipe, the forward then runs in bf16 from the embeddings on (the residual stream
    too, where autocast alone would keep it fp32); what autocast runs in fp32 (on CUDA the norms, softmax and
    the loss) it still runs in fp32.
    Inputs are not cast by FSDP (a block's attention layout is no plain tensor): the token ids need none, and
    the hidden states are bf16 already. Gradients are reduce-scattered in `reduce_dtype`: fp32 by default,
    since a sum over many ranks in bf16 loses the small ones.
    """
    gathered = torch.bfloat16 if param_dtype == "auto" and precision == torch.bfloat16 else None
    return MixedPrecisionPolicy(param_dtype=gathered, reduce_dtype=_DTYPES[reduce_dtype], cast_forward_inputs=False)


def prepare_model(
    model: nn.Module,
    strategy: Strategy,
    device: torch.device,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    activation_checkpointing: bool = False,
    compile_model: bool = False,
    compile_backend: str | Callable[..., Any] = "inductor",
    mp_policy: MixedPrecisionPolicy | None = None,
) -> nn.Module:
    """`model` on `device` with the options and the strategy applied (in place where torch allows it).

    Names of parameters never change (no wrapper prefixes), so state dicts and checkpoints are the same
    whatever was applied; only DDP returns a wrapper, whose ``.module`` is the model. FSDP2 puts new
    (sharded) parameters in place of the model's, so `optimizer`, built over the old ones and not yet
    stepped, is pointed at the new ones. `mp_policy` is FSDP2's mixed precision (`fsdp_precision`; None:
    fp32); `compile_backend` is torch.compile's (a test counts graphs with its own).
    """
    names = {id(parameter): name for name, parameter in model.named_parameters()}
    if strategy == "fsdp" and optimizer is not None:
        _check_can_follow_sharding(optimizer, names)
    model = model.to(device)
    if activation_checkpointing:
        for block in find_blocks(model):
            checkpoint_activations(block)
    if compile_model:
        # nn.Module.compile compiles in place (no `_orig_mod.` prefix); under FSDP2 each block is compiled
        # on its own, one graph per block, so that FSDP's gathers fall between the graphs
        for part in find_blocks(model) if strategy == "fsdp" else [model]:
            part.compile(backend=compile_backend)
    if strategy == "ddp":
        device_ids = [device.index] if device.type == "cuda" and device.index is not None else None
        return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    if strategy == "fsdp":
        policy = mp_policy or MixedPrecisionPolicy()
        for block in find_blocks(model):
            fully_shard(block, mp_policy=policy)
        fully_shard(model, mp_policy=policy)  # the embeddings, the final norm and the (tied) output head
        if optimizer is not None:
            sharded = dict(model.named_parameters())
            for group in optimizer.param_groups:
                group["params"] = [sharded[names[id(parameter)]] for parameter in group["params"]]
    return model


def checkpoint_activations(block: nn.Module) -> None:
    """Have `block` recompute its activations in the backward pass instead of storing them.

    ``torch.utils.checkpoint`` runs inside the block's own forward, so ``torch.compile`` traces it into the
    block's graph (one graph, no break; torch's composable ``checkpoint``, which works by module hooks, breaks
    the graph at every block and, compiled, fails in its recomputation), and the parameters keep their names
    (``checkpoint_wrapper`` would prefix them). Dropout draws the same masks when recomputed (the RNG state
    is replayed), so gradients are those of the plain block.
    """
    forward = block.forward

    def recomputed(*args: Any, **kwargs: Any) -> Any:
        return torch.utils.checkpoint.checkpoint(forward, *args, use_reentrant=False, **kwargs)

    block.forward = recomputed


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


def sharded_model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every weight as this rank holds it (its shard under FSDP2, a DTensor), for a sharded checkpoint.

    No gathering: each rank hands over its own shards. A shared parameter appears once, under the name
    safetensors' ``save_model`` keeps for it (the first in sorted order), so the single-file model made from the
    shards names it as an unsharded run's checkpoint does.
    """
    aliases = {name for group in tied_names(model) for name in sorted(group)[1:]}
    return {name: tensor for name, tensor in get_model_state_dict(model).items() if name not in aliases}


def load_sharded_model_state(model: nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Load what `sharded_model_state` described, filled from a checkpoint (any sharding on either side)."""
    set_model_state_dict(model, _tie(weights, model))


def sharded_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer's state by parameter name, each tensor as this rank holds it; no gathering.

    An optimizer that has not stepped yet gets its state made first (torch steps it with a zero learning
    rate), so that a checkpoint can be read into it.
    """
    return get_optimizer_state_dict(model, optimizer)


def load_sharded_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load a state `sharded_optimizer_state` described (by parameter name), sharded as the model is."""
    set_optimizer_state_dict(model, optimizer, state)


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
