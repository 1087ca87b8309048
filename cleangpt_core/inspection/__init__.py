"""Looking inside a model: record or patch any part's output or hook point by name, attention weights, the
logit lens.

``with capture(model, ["h.*.mlp", "h.*.attn.hook_q"], attention=True) as seen: model(ids)`` records every
block's MLP output, every attention part's queries and weights; ``capture(model, patch={"h.1.hook_resid_pre":
other})`` replaces the residual stream entering block 1 (activation patching). No part needs code for this: see
`cleangpt_core.inspection.capture` for the names and how they are found.
"""

from cleangpt_core.inspection.analysis import inspect_ids, inspect_text, lens_logits, token_log_probs
from cleangpt_core.inspection.capture import (
    Capture,
    attention_part_names,
    attention_scores,
    attention_weights,
    capture,
    hook_point_names,
    name_matches,
    part_names,
    stable_name,
)

__all__ = [
    "Capture",
    "attention_part_names",
    "attention_scores",
    "attention_weights",
    "capture",
    "hook_point_names",
    "inspect_ids",
    "inspect_text",
    "lens_logits",
    "name_matches",
    "part_names",
    "stable_name",
    "token_log_probs",
]
