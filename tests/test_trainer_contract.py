"""The built-in trainers keep the trainer contract (the same checks a plugin's trainer runs)."""

from __future__ import annotations

import pytest

from cleangpt_core.testing.trainer import check_resume_is_exact, check_trainer_contract
from cleangpt_core.trainers import get_schedule


@pytest.mark.slow
@pytest.mark.parametrize("trainer_type", ["simple", "advanced"])
def test_builtin_trainer_keeps_the_contract(trainer_type, tmp_path):
    check_trainer_contract(trainer_type, tmp_path)


@pytest.mark.slow
def test_advanced_trainer_resumes_exactly_with_every_feature_on(tmp_path):
    check_resume_is_exact(
        "advanced",
        tmp_path,
        gradient_accumulation_steps=2,
        mixed_precision="bf16",
        lr_scheduler=get_schedule("cosine", warmup_steps=3),
        grad_clip=0.5,
        eval_interval=4,
        eval_max_batches=2,
        early_stopping_patience=50,
    )
