"""The architecture contract, run against every registered architecture, and proof that it can fail."""

from __future__ import annotations

import pytest
import torch

from cleangpt_core.config import VanillaConfig
from cleangpt_core.model import AttentionLayout, Decoder
from cleangpt_core.registry import get_registry
from cleangpt_core.testing.architecture import (
    SMALL_MODEL,
    check_architecture_contract,
    check_cached_decoding,
    check_padding_invariance,
    check_rejects_long_sequences,
    perturb_parameters,
    registered_model_factory,
)

ARCHITECTURES = [component.name for component in get_registry().components("architecture")]


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_every_registered_architecture_keeps_the_contract(name):
    check_architecture_contract(registered_model_factory(name))


def test_vanilla_without_bias_and_with_dropout_keeps_the_contract():
    check_architecture_contract(registered_model_factory("Vanilla", bias=False, dropout=0.1))


class _PositionsIgnoreMask(Decoder):
    """Counts padding into positions, a classic left-padding bug."""

    def forward(self, input_ids, attention_mask=None, labels=None, kv_cache=None, logits_to_keep=0):
        return super().forward(input_ids, None if kv_cache is None else attention_mask, labels, kv_cache)


class _CacheIgnored(Decoder):
    """Offers a cache but attends only to the new tokens."""

    def forward(self, input_ids, attention_mask=None, labels=None, kv_cache=None, logits_to_keep=0):
        if kv_cache is None:
            return super().forward(input_ids, attention_mask, labels)
        offset = kv_cache.length
        positions = torch.arange(offset, offset + input_ids.size(1)).unsqueeze(0)
        layout = AttentionLayout(mask=None, is_causal=input_ids.size(1) > 1, positions=positions)
        x, layout = self.transformer.wpe(self.transformer.wte(input_ids), layout)
        for block in self.transformer.h:
            x = block(x, layout, None)
        kv_cache.advance(input_ids.size(1))
        return {"logits": self.lm_head(self.transformer.ln_f(x))}


class _NoLengthCheck(Decoder):
    def check_length(self, length, kv_cache=None):
        return None


def _broken(model_class):
    torch.manual_seed(0)
    return perturb_parameters(model_class(VanillaConfig(**SMALL_MODEL))).eval()


def test_padding_check_catches_positions_that_count_pads():
    with pytest.raises(AssertionError, match="padding"):
        check_padding_invariance(_broken(_PositionsIgnoreMask))


def test_cache_check_catches_a_cache_that_is_not_attended():
    with pytest.raises(AssertionError, match="KV cache"):
        check_cached_decoding(_broken(_CacheIgnored))


def test_length_check_catches_a_model_that_indexes_past_its_positions():
    with pytest.raises(AssertionError, match="block_size"):
        check_rejects_long_sequences(_broken(_NoLengthCheck))
