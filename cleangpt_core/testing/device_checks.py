"""A CPU run that tells the training device and the host apart, to catch on a CPU the faults a GPU shows.

On a CPU the training device *is* the host, so code that leaves a tensor on the host, reads a loss back every
step or keeps a float64 accumulator runs fine there, and fails or crawls on a GPU: NCCL refuses a collective
on a CPU tensor, every ``.item()`` makes the host wait for the GPU's queue, MPS has no float64. `DeviceChecks`
puts back the distinction. The trainer trains on ``DeviceChecks.device`` (``cpu:0``: the CPU, named with an
index, so it can be told apart from plain ``cpu``, the host), and the checks follow every tensor's placement:

- on the device: the model's parameters once moved there (``.to(device)``), tensors made with
  ``device=<the training device>``, and whatever an operation computes from a device tensor;
- on the host: everything else (a DataLoader's batches, ``torch.tensor(3.0)``, ``.cpu()``, a ``torch.from_numpy``).

and record, per training step (the checks are a callback: ``on_step_begin`` starts a step's tally):

- host syncs: ``aten._local_scalar_dense`` of a device tensor (``.item()``, ``float(t)``, ``bool(t)``; counted
  by a `TorchDispatchMode`, where every one of them ends), and ``.tolist()``, ``.numpy()``, ``.cpu()`` or a
  ``.to`` the host of a device tensor;
- float64 tensors on the device;
- faults a GPU raises on: a collective that the code under test (not torch's) issues on a host tensor (NCCL
  takes device tensors only), an operation mixing a host tensor (not a 0-dim one) with a device tensor, and a
  ``non_blocking`` copy to the device from memory that is not pinned (asynchronous only from pinned memory).

    with DeviceChecks() as checks:
        trainer = get_trainer("simple", model, loader, optimizer, device=checks.device, callbacks=[checks])
        trainer.train()
    assert checks.syncs_in(step=3) == []

Tensors the code makes inside a composite torch function it calls (``F.cross_entropy``) are not followed one by
one; the result takes the placement of the inputs.
"""

from __future__ import annotations

import sys
import sysconfig
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.weak import WeakTensorKeyDictionary

TRAINING_DEVICE = torch.device("cpu", 0)
_TORCH = str(Path(torch.__file__).parent)
# torch's dispatch to this mode, its collectives and their logging wrappers: seen through to find who called them
_COLLECTIVES = (
    str(Path(_TORCH) / "overrides.py"),
    *(str(Path(_TORCH) / "distributed" / name) for name in ("distributed_c10d.py", "c10d_logger.py")),
)
_THIS = __file__
_STDLIB = sysconfig.get_paths()["stdlib"]
_SET_DATA = torch.Tensor.data.__set__  # a new method-wrapper on each access: compared with ==
_TO_HOST = {torch.Tensor.cpu, torch.Tensor.tolist, torch.Tensor.numpy, torch.Tensor.__array__}


def _where() -> str:
    """The innermost frame of the code under test (not torch's, not this module's): ``file:line in function``."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not filename.startswith(_TORCH) and filename != _THIS and "/contextlib.py" not in filename:
            return f"{Path(filename).name}:{frame.f_lineno} in {frame.f_code.co_name}"
        frame = frame.f_back
    return "?"


def _names_training_device(target: object) -> bool | None:
    """Whether a factory's ``device=`` argument names the training device (None: no device named).

    The CPU stands for both, so the spelling tells them apart: the string ``"cpu"`` is the host, as code
    writes it for the host; a `torch.device` is the device of some tensor (``x.device`` reads ``cpu`` for a
    tensor on ``cpu:0``), so the training device's, as it is on a GPU.
    """
    if target is None:
        return None
    if isinstance(target, str):
        return torch.device(target) == TRAINING_DEVICE
    return isinstance(target, torch.device) and target.type == "cpu" and target.index in (None, 0)


def _called_by_code_under_test(*, through_torch: bool) -> bool:
    """Whether the torch function being handled was called by the code under test (cleanGPT's, a plugin's or a
    test's), not by torch, another library or the standard library; `through_torch`: possibly through
    torch.distributed's collective wrappers (``dist.all_reduce`` is wrapped in torch's logging decorators,
    ``all_gather_object`` calls ``all_gather``), else directly. A collective that torch's own code issues (FSDP's,
    torch.distributed.checkpoint's) is torch's: it puts its tensors where the backend takes them."""
    frame = sys._getframe(2)
    while frame is not None and (
        frame.f_code.co_filename == _THIS or (through_torch and frame.f_code.co_filename in _COLLECTIVES)
    ):
        frame = frame.f_back
    if frame is None:
        return False
    filename = frame.f_code.co_filename
    if filename.startswith(_TORCH):
        return False
    return "cleangpt" in filename or not (filename.startswith(_STDLIB) or "-packages" in filename)


class DeviceChecks(TorchFunctionMode):
    """Follow the placement of tensors on the host or the training device, and record what a GPU would mind."""

    device = TRAINING_DEVICE

    def __init__(self) -> None:
        super().__init__()
        self._on_device = WeakTensorKeyDictionary()
        self.step: int | None = None  # the training step being tallied (None: before the first)
        self.syncs: dict[int | None, list[str]] = defaultdict(list)
        self.float64: list[str] = []
        self.faults: list[str] = []
        self._dispatch = _ScalarReads(self)

    # -- the trainer's callback ---------------------------------------------------------------------------
    def on_step_begin(self, step: int) -> None:
        """Start the tally of `step` (its syncs include its events, evaluation and checkpoint)."""
        self.step = step

    def syncs_in(self, step: int | None) -> list[str]:
        """Where the host waited for the device during `step`."""
        return list(self.syncs.get(step, []))

    def report(self) -> dict[str, Any]:
        """Everything recorded, as JSON-ready data (syncs keyed by step; 'before' for those before step 1)."""
        return {
            "syncs": {("before" if step is None else str(step)): sites for step, sites in self.syncs.items()},
            "float64": self.float64,
            "faults": self.faults,
        }

    # -- placement ------------------------------------------------------------------------------------------
    def on_device(self, tensor: torch.Tensor) -> bool:
        """Whether `tensor` lives on the training device (as far as the checks followed it).

        Parameters are: the trainer moves the model there, and FSDP2 makes its gathered ones out of sight.
        """
        return isinstance(tensor, nn.Parameter) or tensor in self._on_device

    def place(self, tensor: torch.Tensor) -> None:
        """Count `tensor` as being on the training device (for tensors made before the checks began)."""
        self._on_device[tensor] = True

    def __enter__(self) -> DeviceChecks:
        super().__enter__()
        self._dispatch.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._dispatch.__exit__(*exc_info)
        super().__exit__(*exc_info)

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        inputs = [leaf for leaf in tree_leaves((args, kwargs)) if isinstance(leaf, torch.Tensor)]
        on_device = [tensor for tensor in inputs if self.on_device(tensor)]
        ours = _called_by_code_under_test(through_torch=False)
        collective = getattr(func, "__module__", "").startswith("torch.distributed")
        collective = collective and _called_by_code_under_test(through_torch=True)
        if collective and len(on_device) < len(inputs):
            self.faults.append(f"collective {func.__name__} on a host tensor at {_where()} (NCCL refuses it)")
        if func in _TO_HOST and on_device:
            self._sync(func.__name__)
        result = func(*args, **kwargs)
        if func is torch.Tensor.to:
            self._moved(args[0], result, args[1:], kwargs)
        elif func == _SET_DATA:  # `parameter.data = moved`: the parameter is where `moved` is
            if self.on_device(args[1]):
                self.place(args[0])
        elif func not in _TO_HOST:
            named = _names_training_device(kwargs.get("device"))
            if named is None and ours and on_device and isinstance(result, torch.Tensor):
                big_hosts = [t for t in inputs if not self.on_device(t) and t.dim() > 0]
                if big_hosts and func is not torch.Tensor.copy_:
                    self.faults.append(f"{getattr(func, '__name__', func)} mixes host and device tensors at {_where()}")
            if named if named is not None else on_device:
                for output in tree_leaves(result):
                    if isinstance(output, torch.Tensor) and not any(output is tensor for tensor in inputs):
                        self._place_new(output)
        return result

    def _moved(self, source: torch.Tensor, result: torch.Tensor, args: tuple, kwargs: dict[str, Any]) -> None:
        """Follow a ``.to``: onto the device, to the host (a sync from the device), or a change of dtype only."""
        kwargs = {key: value for key, value in kwargs.items() if key != "copy"}  # not one of _parse_to's
        _, _, non_blocking, _ = torch._C._nn._parse_to(*args, **kwargs)
        target = kwargs.get("device", next((a for a in args if isinstance(a, str | torch.device | torch.Tensor)), None))
        if isinstance(target, torch.Tensor):  # `.to(other)`: where `other` is
            target = self.device if self.on_device(target) else "cpu"
        named = _names_training_device(target)
        if isinstance(target, torch.device) and target.index is None:
            # `.to(x.device)`: the place of some tensor, on the device or on the host, here the source's own
            # (torch's code moves an optimizer's host step counts with `.to(torch.device("cpu"))` too)
            named = None
        from_device = self.on_device(source)
        if named is None:
            if from_device:
                self._place_new(result)
        elif named:
            if not from_device and non_blocking and not source.is_pinned():
                self.faults.append(f"non_blocking copy from unpinned host memory at {_where()} (it is synchronous)")
            self._place_new(result)
        elif from_device:
            self._sync("to(host)")
            if result is source:  # the same tensor on a real CPU: the host's copy is a new tensor on a GPU
                del self._on_device[source]

    def _place_new(self, tensor: torch.Tensor) -> None:
        self.place(tensor)
        if tensor.dtype == torch.float64:
            self.float64.append(f"float64 tensor on the device at {_where()}")

    def _sync(self, what: str) -> None:
        self.syncs[self.step].append(f"{what} at {_where()}")


class _ScalarReads(TorchDispatchMode):
    """Counts ``aten._local_scalar_dense`` of device tensors: where ``.item()``, ``float()`` and ``bool()`` of a
    tensor end, each a wait for the device's queue."""

    def __init__(self, checks: DeviceChecks) -> None:
        super().__init__()
        self.checks = checks

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        if func is torch.ops.aten._local_scalar_dense.default and self.checks.on_device(args[0]):
            self.checks._sync("item")
        return func(*args, **(kwargs or {}))
