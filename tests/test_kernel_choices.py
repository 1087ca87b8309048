"""How a kernel is chosen: measured once per shape class and host, cached as JSON, fixed where asked, recorded by a
run and reused when it resumes, and PyTorch's own where the timings are noise."""

from __future__ import annotations

import json
import logging
import time

import pytest

from cleangpt_core.errors import ConfigError
from cleangpt_core.kernels import choices_made, fixed, forget_choices, use_recorded
from cleangpt_core.kernels.cache import read_cache, store_choice
from cleangpt_core.kernels.choices import KERNELS_ENV, choose, parse_fixed, shape_name
from cleangpt_core.kernels.host import host_key
from cleangpt_core.kernels.tuner import MARGIN, PLAIN, decide
from cleangpt_core.testing.trainer import StopAtStep, build_tiny_trainer
from cleangpt_core.trainers.training_checkpoint import read_state

SHAPE = ("gelu", "float32", "grad", 1 << 30)  # a shape class no test computes: only these tests choose it


def _sleeping(seconds: float):
    return lambda: time.sleep(seconds)


def _sigmoid_faster():
    """Candidates whose timings differ five-fold, each long enough that a busy machine's jitter stays small."""
    return {PLAIN: _sleeping(0.05), "sigmoid": _sleeping(0.01)}


def _plain_faster():
    return {PLAIN: _sleeping(0.01), "sigmoid": _sleeping(0.05)}


def _unmeasured():
    raise AssertionError("the candidates were timed, where the choice should have come from elsewhere")


@pytest.fixture
def measuring(monkeypatch, tmp_path):
    """Kernels measured (not fixed, as the other tests have them), into a cache file of this test's own."""
    monkeypatch.setenv(KERNELS_ENV, "auto")
    monkeypatch.setenv("CLEANGPT_KERNELS_CACHE", str(tmp_path / "kernels.json"))
    forget_choices()
    yield tmp_path / "kernels.json"
    forget_choices()


def test_the_fastest_candidate_wins_by_a_clear_margin():
    decision = decide({PLAIN: [2.0, 2.1, 2.0], "sigmoid": [1.0, 1.05, 1.0]})
    assert (decision.kernel, decision.noisy) == ("sigmoid", False)
    assert decision.ms == {PLAIN: 2000.0, "sigmoid": 1000.0}


def test_a_tie_keeps_pytorchs_own_computation():
    slightly_faster = 1.0 - MARGIN / 2
    assert decide({PLAIN: [1.0, 1.0, 1.0], "sigmoid": [slightly_faster] * 3}).kernel == PLAIN


def test_timings_whose_repeats_disagree_are_noise_and_keep_pytorchs_computation():
    decision = decide({PLAIN: [1.0, 1.0, 1.0], "sigmoid": [0.5, 1.5, 0.5, 1.5]})
    assert decision.noisy and decision.kernel == PLAIN and decision.spread == pytest.approx(2.0)


def test_a_win_larger_than_the_noise_stands_on_a_busy_machine():
    # matmul attention against SDPA in bf16, as measured in the README's main job: rounds 37 % apart, 9x faster
    decision = decide({PLAIN: [14.1, 14.3, 19.0, 14.2, 14.5], "matmul": [1.57, 2.15, 1.6, 1.58, 2.1]})
    assert (decision.kernel, decision.noisy) == ("matmul", False) and decision.spread > 0.25


def test_a_measured_choice_is_cached_under_this_hosts_key_and_not_measured_again(measuring):
    assert choose(SHAPE, _sigmoid_faster) == "sigmoid"
    entry = read_cache()[host_key()][shape_name(SHAPE)]
    assert entry["kernel"] == "sigmoid" and set(entry["ms"]) == {PLAIN, "sigmoid"}
    assert choices_made()[shape_name(SHAPE)] == "sigmoid"
    forget_choices()  # a new process: the cache answers
    assert choose(SHAPE, _unmeasured) == "sigmoid"


def test_another_hosts_choices_are_not_used(measuring):
    another = "another CPU | isa=avx2 | threads=64 | torch=2.13.0"
    store_choice(another, shape_name(SHAPE), {"kernel": "sigmoid", "ms": {}})
    assert choose(SHAPE, _plain_faster) == PLAIN
    assert set(read_cache()) == {another, host_key()}


def test_noise_keeps_pytorchs_computation_caches_nothing_and_says_so_once(measuring, caplog):
    def erratic():  # every other call ten times as slow: a machine busy with something else
        calls = iter(range(1000))
        return lambda: time.sleep(0.05 if next(calls) % 2 else 0.005)

    with caplog.at_level(logging.WARNING, logger="cleangpt_core.kernels"):
        assert choose(SHAPE, lambda: {PLAIN: erratic(), "sigmoid": erratic()}) == PLAIN
        assert choose((*SHAPE[:3], 1 << 29), lambda: {PLAIN: erratic(), "sigmoid": erratic()}) == PLAIN
    assert not measuring.exists()
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 1 and warnings[0].startswith("kernel timings are noise on this machine now")


def test_a_damaged_cache_is_ignored_with_a_warning_and_rewritten(measuring, caplog):
    measuring.write_text('{"format": 1, "hosts": {"x": {"gelu|a": {"kernel": 3}}}}')
    with caplog.at_level(logging.WARNING, logger="cleangpt_core.kernels"):
        assert choose(SHAPE, _sigmoid_faster) == "sigmoid"
    assert "ignoring the kernel cache" in caplog.text
    assert set(json.loads(measuring.read_text())["hosts"]) == {host_key()}


def test_a_cache_that_is_not_json_is_ignored_too(measuring):
    measuring.write_text("import os; os.remove('/')")
    assert read_cache() == {}


def test_a_cached_kernel_of_another_operation_is_measured_over(measuring):
    store_choice(host_key(), shape_name(SHAPE), {"kernel": "onednn", "ms": {}})  # not a GELU kernel
    assert choose(SHAPE, _sigmoid_faster) == "sigmoid"


def test_fixed_kernels_are_honoured_before_anything_is_measured(measuring, monkeypatch):
    with fixed(gelu="sigmoid"):
        assert choose(SHAPE, _unmeasured) == "sigmoid"
    monkeypatch.setenv(KERNELS_ENV, "gelu=sigmoid")
    forget_choices()  # a new process: the environment is read when the first choice is made
    assert choose(SHAPE, _unmeasured) == "sigmoid"
    monkeypatch.setenv(KERNELS_ENV, "plain")
    forget_choices()
    assert choose(SHAPE, _unmeasured) == PLAIN
    assert not measuring.exists()


def test_a_bad_kernels_setting_names_itself_and_the_fix():
    assert parse_fixed("linear=onednn, head_loss=chunks:4096") == {"linear": "onednn", "head_loss": "chunks:4096"}
    with pytest.raises(ConfigError, match=r"\$CLEANGPT_KERNELS='linear=fast'.*'auto', 'plain'"):
        parse_fixed("linear=fast")
    with pytest.raises(ValueError, match="names no kernel"):
        fixed(attention="flash")


def test_recorded_choices_come_before_the_cache(measuring):
    store_choice(host_key(), shape_name(SHAPE), {"kernel": PLAIN, "ms": {}})
    use_recorded({shape_name(SHAPE): "sigmoid", "gelu|bogus": "tanh"})  # the second is skipped: no GELU kernel
    assert choose(SHAPE, _unmeasured) == "sigmoid"


def test_a_resumed_run_computes_with_the_kernels_it_recorded(measuring, monkeypatch, tmp_path):
    monkeypatch.setenv(KERNELS_ENV, "gelu=sigmoid,attention=matmul")
    first = build_tiny_trainer("simple", output_dir=tmp_path / "run", num_epochs=1, checkpoint_interval=3,
                               callbacks=[StopAtStep(3)])  # fmt: skip
    first.train()
    recorded = read_state(first.checkpoints.latest())["kernels"]
    assert {kernel for shape, kernel in recorded.items() if shape.startswith(("gelu|", "attention|"))} == {
        "sigmoid",
        "matmul",
    }
    # Another process, measuring, on a host whose cache says otherwise for every recorded shape
    monkeypatch.setenv(KERNELS_ENV, "auto")
    forget_choices()
    for shape in recorded:
        store_choice(host_key(), shape, {"kernel": PLAIN, "ms": {}})
    resumed = build_tiny_trainer("simple", output_dir=tmp_path / "run", num_epochs=1, checkpoint_interval=3)
    resumed.train(resume_from=tmp_path / "run")
    made = choices_made()
    assert {shape: made[shape] for shape in recorded if shape in made} == {
        shape: kernel for shape, kernel in recorded.items() if shape in made
    }
    assert any(shape.startswith("gelu|") for shape in made)
