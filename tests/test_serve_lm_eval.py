"""lm-eval's own `local-completions` model, scoring a local multiple-choice task through `cleangpt serve`, agrees
with `cleangpt lm-eval` on the same checkpoint request by request (1e-4 per token); and lm-eval's own command
line runs the `cleangpt` model (the route for lm-eval releases without plugin discovery)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cleangpt_core.config import GPTConfig
from cleangpt_core.model import get_model, save_model
from cleangpt_core.serving import build_app
from cleangpt_core.serving.background import running_server
from cleangpt_core.testing.architecture import perturb_parameters
from cleangpt_core.tokenizers import create_tokenizer, from_pretrained

lm_eval = pytest.importorskip("lm_eval")

GPT2_FILES = Path(__file__).parent / "fixtures" / "gpt2"
QUESTIONS = [
    {"question": "The capital of France is", "choices": ["Paris", "a cat", "blue"], "answer": 0},
    {"question": "Two plus two makes", "choices": ["seven", "four", "a window"], "answer": 1},
    {"question": "Romeo loves", "choices": ["Juliet", "the moon", "nothing"], "answer": 0},
    {"question": "Arise, fair", "choices": ["moon", "sun"], "answer": 1},
]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A small random Vanilla with the GPT-2 tokenizer."""
    directory = tmp_path_factory.mktemp("serve_lm_eval") / "served"
    tokenizer = create_tokenizer("gpt2", pretrained_model_name_or_path=str(GPT2_FILES))
    config = GPTConfig(vocab_size=tokenizer.vocab_size, n_layer=2, n_head=2, n_embd=32, block_size=32)
    torch.manual_seed(0)
    save_model(perturb_parameters(get_model("Vanilla", config=config), seed=3), directory)
    tokenizer.save_pretrained(directory / "tokenizer")
    return directory


@pytest.fixture(scope="module")
def tasks(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tasks")
    (folder / "choice.jsonl").write_text("".join(json.dumps(row) + "\n" for row in QUESTIONS))
    (folder / "choice.yaml").write_text(
        "task: cleangpt_served_choice\ndataset_path: json\ntest_split: train\n"
        f"dataset_kwargs:\n  data_files:\n    train: {folder / 'choice.jsonl'}\n"
        "output_type: multiple_choice\ndoc_to_text: '{{question}}'\ndoc_to_choice: '{{choices}}'\n"
        "doc_to_target: '{{answer}}'\nmetric_list:\n  - metric: acc\n"
    )
    return folder


def _log_likelihoods(results: dict) -> list[float]:
    samples = sorted(results["samples"]["cleangpt_served_choice"], key=lambda sample: sample["doc_id"])
    return [float(response[0][0]) for sample in samples for response in sample["resps"]]


@pytest.mark.slow  # lm-eval indexes its thousands of task files first
def test_local_completions_against_the_server_scores_as_cleangpt_lm_eval(checkpoint, tasks):
    from lm_eval.evaluator import simple_evaluate
    from lm_eval.models.openai_completions import LocalCompletionsAPI
    from lm_eval.tasks import TaskManager

    from cleangpt_core.experiments.lm_eval_harness import CleanGPTLM

    manager = TaskManager(include_path=str(tasks))
    direct = simple_evaluate(
        model=CleanGPTLM(pretrained=str(checkpoint), device="cpu", batch_size=4),
        tasks=["cleangpt_served_choice"],
        task_manager=manager,
        log_samples=True,
    )
    with running_server(build_app(checkpoint)) as url:
        # the remote tokenizer: lm-eval asks the server's /tokenize, so both sides split text alike
        client = LocalCompletionsAPI(
            model="served", base_url=f"{url}/v1/completions", tokenizer_backend="remote", max_length=33
        )
        served = simple_evaluate(
            model=client,
            tasks=["cleangpt_served_choice"],
            task_manager=manager,
            log_samples=True,
        )
    expected, got = _log_likelihoods(direct), _log_likelihoods(served)
    assert len(got) == sum(len(row["choices"]) for row in QUESTIONS)
    tokenizer = from_pretrained(checkpoint / "tokenizer")
    for row_choices, (want, have) in zip(
        [c for row in QUESTIONS for c in row["choices"]], zip(expected, got, strict=True), strict=True
    ):
        assert have == pytest.approx(want, abs=1e-4 * len(tokenizer.encode(" " + row_choices)))
    task = "cleangpt_served_choice"
    assert served["results"][task]["acc,none"] == direct["results"][task]["acc,none"]


@pytest.mark.slow  # lm-eval indexes its task files in a fresh interpreter
def test_lm_evals_own_command_line_runs_the_cleangpt_model(checkpoint, tasks):
    command = [
        sys.executable,
        "-m",
        "cleangpt_core.experiments.lm_eval_cli",
        "run",
        "--model",
        "cleangpt",
        "--model_args",
        f"pretrained={checkpoint}",
        "--device",
        "cpu",
        "--tasks",
        "cleangpt_served_choice",
        "--include_path",
        str(tasks),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "cleangpt_served_choice" in result.stdout and "acc" in result.stdout
