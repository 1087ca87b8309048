"""Looking inside a model: record or patch any part's output by name, attention weights, the logit lens.

``with capture(model, ["h.*.mlp"], attention=True) as seen: model(ids)`` records every block's MLP output
and every attention part's weights; ``capture(model, patch={"h.1": other})`` replaces block 1's output
(activation patching). No part needs code for this: see `capture` for how names and weights are found.
"""

from cleangpt_core.inspection.analysis import inspect_ids, inspect_text, lens_logits, token_log_probs
from cleangpt_core.inspection.capture import (
    Capture,
    attention_part_names,
    attention_weights,
    capture,
    part_names,
    stable_name,
)

__all__ = [
    "Capture",
    "attention_part_names",
    "attention_weights",
    "capture",
    "inspect_ids",
    "inspect_text",
    "lens_logits",
    "part_names",
    "stable_name",
    "token_log_probs",
]
