"""Host kernels: the operations the model's parts call (linear, GELU, attention, the head and its loss), each
computed by the kernel measured fastest for its shape on this host, and the table of those choices.

The parts read as the maths and call these by their plain names; the alternatives, the measuring, the cache
per host and a run's record of its choices all live here (`ops`, `choices`, `tuner`, `cache`, `host`).
"""

from cleangpt_core.kernels.choices import choices_made, fixed, forget_choices, use_recorded
from cleangpt_core.kernels.chunked_loss import LazyLogits, chunked_head_loss, next_token_targets
from cleangpt_core.kernels.ops import attention, chunked_head, gelu_tanh, head_loss_chunk, linear, onednn_linear

__all__ = [
    "LazyLogits",
    "attention",
    "choices_made",
    "chunked_head",
    "chunked_head_loss",
    "fixed",
    "forget_choices",
    "gelu_tanh",
    "head_loss_chunk",
    "linear",
    "next_token_targets",
    "onednn_linear",
    "use_recorded",
]
