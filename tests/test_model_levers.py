"""The decoder's initialisation and output options of the speedrun: zero-initialised output projections and
logit soft-capping, both off by default."""

from __future__ import annotations

import pytest
import torch

from cleangpt_core.errors import HFConversionError
from cleangpt_core.huggingface.weights import hf_config_from_llama
from cleangpt_core.model import get_model
from cleangpt_core.testing.architecture import check_architecture_contract, registered_model_factory
from cleangpt_core.testing.trainer import tiny_model


def test_zero_initialised_projections_start_every_block_as_the_identity():
    def projections(model: torch.nn.Module) -> list[torch.Tensor]:
        return [p for name, p in model.named_parameters() if name.endswith("c_proj.weight")]

    zeroed, default = projections(tiny_model(zero_init_projections=True)), projections(tiny_model())
    assert len(zeroed) == 4 and all(torch.count_nonzero(p) == 0 for p in zeroed)
    assert all(torch.count_nonzero(p) > 0 for p in default)


def test_logit_softcap_bounds_the_logits_and_is_off_by_default():
    capped = tiny_model(logit_softcap=0.5).eval()
    logits = capped(torch.randint(0, 17, (2, 16)))["logits"]
    assert logits.abs().max() < 0.5
    assert tiny_model().config.logit_softcap is None


def test_a_softcapped_model_is_not_exported_as_llama():
    model = get_model("Llama", vocab_size=17, n_layer=1, n_head=2, n_embd=32, block_size=16, logit_softcap=30.0)
    with pytest.raises(HFConversionError, match="logit_softcap"):
        hf_config_from_llama(model.config)


def test_the_decoder_keeps_its_contract_with_both_levers_on():
    check_architecture_contract(registered_model_factory("Llama", zero_init_projections=True, logit_softcap=15.0))
