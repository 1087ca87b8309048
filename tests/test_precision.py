"""Mixed precision: "auto" takes bf16 where the device computes it natively, "no" stays fp32, and a resumed run
continues in the precision it trained in, whatever "auto" would choose now."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from cleangpt_core.checkpoints.run_dir import STATE_JSON_FILE
from cleangpt_core.errors import CheckpointError
from cleangpt_core.testing.trainer import StopAtStep, build_tiny_trainer, weights_of
from cleangpt_core.trainers.precision import native_bf16, resolve_precision

CPU = torch.device("cpu")
# what torch.cpu.get_capabilities() reports on an AVX-512 CPU without bf16 instructions (Skylake-X, Zen 3):
# oneDNN accepts bf16 there, but emulates it
AVX512_WITHOUT_BF16 = {"architecture": "x86_64", "avx2": True, "avx512_f": True, "avx512_bw": True, "avx512_vl": True}


def _logits_dtype(trainer) -> torch.dtype:
    with trainer.autocast():
        return trainer.model(torch.zeros(1, 4, dtype=torch.long))["logits"].dtype


def test_auto_is_bf16_exactly_where_this_cpu_computes_bf16_natively():
    trainer = build_tiny_trainer("advanced")  # the default: mixed_precision="auto"
    native = native_bf16(CPU)
    assert trainer.precision == (torch.bfloat16 if native else None)
    assert _logits_dtype(trainer) == (torch.bfloat16 if native else torch.float32)
    assert trainer.trainer_state()["mixed_precision"] == ("bf16" if native else "no")


def test_a_cpu_that_only_emulates_bf16_trains_in_full_precision(monkeypatch):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: AVX512_WITHOUT_BF16)
    assert not native_bf16(CPU)
    trainer = build_tiny_trainer("advanced")
    assert trainer.precision is None and _logits_dtype(trainer) == torch.float32


def test_native_bf16_on_a_cpu_needs_its_bf16_instructions_and_onednns_bf16(monkeypatch):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {**AVX512_WITHOUT_BF16, "avx512_bf16": True})
    assert native_bf16(CPU) == torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert not native_bf16(torch.device("meta"))  # neither CPU nor CUDA: full precision


@pytest.mark.parametrize("option", ["no", False])
def test_no_mixed_precision_trains_in_fp32(option):
    trainer = build_tiny_trainer("advanced", mixed_precision=option, max_steps=2)
    assert trainer.precision is None and trainer.scaler is None
    assert _logits_dtype(trainer) == torch.float32
    assert trainer.trainer_state()["mixed_precision"] == "no"
    assert trainer.train()["mixed_precision"] == "no"


def test_the_explicit_options_resolve_as_before():
    assert resolve_precision(True, CPU) == resolve_precision("bf16", CPU) == torch.bfloat16
    assert resolve_precision("no", CPU) is resolve_precision(False, CPU) is None


def _interrupted_and_straight(tmp_path: Path, **options) -> dict[str, torch.Tensor]:
    """Weights of a run that never stopped; `tmp_path/resumed` holds the same run stopped at step 15."""
    options = {"num_epochs": 3, "checkpoint_interval": 5, **options}
    straight = build_tiny_trainer("advanced", output_dir=tmp_path / "straight", **options)
    straight.train()
    interrupted = build_tiny_trainer("advanced", output_dir=tmp_path / "resumed", callbacks=[StopAtStep(15)], **options)
    interrupted.train()
    assert interrupted.progress.step == 15
    return weights_of(straight.raw_model)


def _assert_same_weights(expected: dict[str, torch.Tensor], actual: dict[str, torch.Tensor]) -> None:
    assert [name for name in expected if not torch.equal(expected[name], actual[name])] == []


def test_a_run_saved_before_the_record_resumes_in_full_precision_under_auto(tmp_path, caplog):
    # trained with the old default (mixed_precision=False), by a version whose checkpoints recorded no precision
    expected = _interrupted_and_straight(tmp_path, mixed_precision=False)
    for state_file in (tmp_path / "resumed" / "checkpoints").glob(f"*/{STATE_JSON_FILE}"):
        payload = json.loads(state_file.read_text())
        del payload["state"]["mixed_precision"]
        state_file.write_text(json.dumps(payload))
    resumed = build_tiny_trainer("advanced", model_seed=1, output_dir=tmp_path / "resumed", num_epochs=3)
    with caplog.at_level(logging.WARNING):
        stats = resumed.train(resume_from=tmp_path / "resumed")
    assert resumed.precision is None and stats["mixed_precision"] == "no"
    if native_bf16(CPU):  # "auto" would have chosen bf16: the run says it does not
        assert "trained in full precision (saved before mixed_precision='auto' was the default)" in caplog.text
    _assert_same_weights(expected, weights_of(resumed.raw_model))


@pytest.mark.skipif(not native_bf16(CPU), reason="needs a CPU on which 'auto' trains in bf16")
def test_an_auto_run_resumed_where_auto_chooses_fp32_continues_in_bf16(tmp_path, monkeypatch, caplog):
    expected = _interrupted_and_straight(tmp_path)  # "auto": bf16 here
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: AVX512_WITHOUT_BF16)
    resumed = build_tiny_trainer("advanced", model_seed=1, output_dir=tmp_path / "resumed", num_epochs=3)
    assert resumed.precision is None  # what "auto" picks on this CPU now
    with caplog.at_level(logging.WARNING):
        resumed.train(resume_from=tmp_path / "resumed")
    assert resumed.precision == torch.bfloat16
    assert "trained in bf16 autocast; it continues so (mixed_precision='auto' would choose full precision" in (
        caplog.text
    )
    _assert_same_weights(expected, weights_of(resumed.raw_model))


def test_an_explicit_option_that_differs_from_the_record_is_obeyed_with_a_warning(tmp_path, caplog):
    first = build_tiny_trainer("advanced", output_dir=tmp_path, max_steps=2, mixed_precision="bf16")
    first.train()
    resumed = build_tiny_trainer("advanced", output_dir=tmp_path, max_steps=3, mixed_precision="no")
    with caplog.at_level(logging.WARNING):
        resumed.train(resume_from=tmp_path)
    assert resumed.precision is None
    assert "trained with mixed_precision='bf16'; it continues in full precision" in caplog.text


def test_a_damaged_precision_record_is_an_error_naming_it(tmp_path):
    build_tiny_trainer("advanced", output_dir=tmp_path, max_steps=1).train()
    state_file = tmp_path / "checkpoints" / "step-00000001" / STATE_JSON_FILE
    payload = json.loads(state_file.read_text())
    payload["state"]["mixed_precision"] = "fp8"
    state_file.write_text(json.dumps(payload))
    resumed = build_tiny_trainer("advanced", output_dir=tmp_path, max_steps=2)
    with pytest.raises(CheckpointError, match="records mixed_precision='fp8'"):
        resumed.train(resume_from=tmp_path)
