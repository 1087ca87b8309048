"""The lm-evaluation-harness adapter, on tasks defined here from local JSON Lines files (nothing downloaded).

Every expected number is computed independently: the rolling log-likelihood against ``cleangpt evaluate`` on
the same text, the multiple-choice accuracy and the generations from the model's own logits and decoding.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from cleangpt_core.cli.main import cli
from cleangpt_core.config import GPTConfig
from cleangpt_core.experiments.lm_eval_harness import CleanGPTLM, evaluate_tasks
from cleangpt_core.inference.generation import run_generation
from cleangpt_core.model import get_model, load_model, save_model
from cleangpt_core.testing.architecture import perturb_parameters
from cleangpt_core.tokenizers import create_tokenizer, from_pretrained

GPT2_FILES = Path(__file__).parent / "fixtures" / "gpt2"
TEXT = (
    "But, soft! what light through yonder window breaks? It is the east, and Juliet is the sun. Arise, fair sun, "
    "and kill the envious moon, who is already sick and pale with grief."
)
QUESTIONS = [
    {"question": "The capital of France is", "choices": ["Paris", "a cat", "blue"], "answer": 0},
    {"question": "Two plus two makes", "choices": ["seven", "four", "a window"], "answer": 1},
    {"question": "Romeo loves", "choices": ["Juliet", "the moon", "nothing"], "answer": 0},
    {"question": "The sun rises in the", "choices": ["west", "sea", "east"], "answer": 2},
    {"question": "What light through yonder", "choices": ["window", "door", "tree"], "answer": 0},
    {"question": "Arise, fair", "choices": ["moon", "sun"], "answer": 1},
]
PROMPTS = ["But, soft! what", "It is the", "Arise, fair sun, and", "who is"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A small random Vanilla with the GPT-2 tokenizer (block_size 32, so texts span several windows)."""
    directory = tmp_path_factory.mktemp("lm_eval") / "checkpoint"
    tokenizer = create_tokenizer("gpt2", pretrained_model_name_or_path=str(GPT2_FILES))
    config = GPTConfig(vocab_size=tokenizer.vocab_size, n_layer=2, n_head=2, n_embd=32, block_size=32)
    torch.manual_seed(0)
    save_model(perturb_parameters(get_model("Vanilla", config=config), seed=3), directory)
    tokenizer.save_pretrained(directory / "tokenizer")
    return directory


@pytest.fixture(scope="module")
def tasks(tmp_path_factory, checkpoint) -> Path:
    """Task YAMLs and their data: a rolling log-likelihood, a multiple choice and a generation task."""
    folder = tmp_path_factory.mktemp("tasks")
    model, tokenizer = load_model(checkpoint).eval(), from_pretrained(checkpoint / "tokenizer")
    targets = []
    for number, prompt in enumerate(PROMPTS):
        # half the targets are what greedy decoding gives, half are not: exact match is then 0.5
        _, text = run_generation(model, tokenizer, prompt, max_new_tokens=6, sampler="greedy")
        targets.append(text[len(prompt) :].split("\n")[0] if number % 2 == 0 else "something else")
    data = {
        "rolling": [{"text": TEXT}],
        "choice": QUESTIONS,
        "generate": [{"prompt": p, "target": t} for p, t in zip(PROMPTS, targets, strict=True)],
    }
    for name, rows in data.items():
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    common = "dataset_path: json\ntest_split: train\n"
    specs = {
        "rolling": "output_type: loglikelihood_rolling\ndoc_to_text: ''\ndoc_to_target: '{{text}}'\n"
        "metric_list:\n  - metric: bits_per_byte\n",
        "choice": "output_type: multiple_choice\ndoc_to_text: '{{question}}'\ndoc_to_choice: '{{choices}}'\n"
        "doc_to_target: '{{answer}}'\nmetric_list:\n  - metric: acc\n",
        "generate": "output_type: generate_until\ndoc_to_text: '{{prompt}}'\ndoc_to_target: '{{target}}'\n"
        "generation_kwargs:\n  until: ['\\n']\n  max_gen_toks: 6\n  do_sample: false\n"
        "metric_list:\n  - metric: exact_match\n",
    }
    for name, spec in specs.items():
        files = f"dataset_kwargs:\n  data_files:\n    train: {folder / (name + '.jsonl')}\n"
        (folder / f"{name}.yaml").write_text(f"task: cleangpt_{name}\n{common}{files}{spec}")
    return folder


@pytest.mark.slow  # lm-eval indexes its thousands of task files first
def test_the_rolling_log_likelihood_equals_cleangpt_evaluate_per_token(checkpoint, tasks, tmp_path):
    results, _ = evaluate_tasks(checkpoint, ["cleangpt_rolling"], include_path=tasks, batch_size=3, device="cpu")
    bits_per_byte = results["results"]["cleangpt_rolling"]["bits_per_byte,none"]
    log_likelihood = -bits_per_byte * len(TEXT.encode()) * math.log(2)
    tokens = len(from_pretrained(checkpoint / "tokenizer").encode(TEXT))

    # `cleangpt evaluate` scores the text after the end-of-text token, as lm-eval conditions its first token:
    # the last of ten documents is the validation split, and the data pipeline keeps "<|endoftext|>" a token
    corpus = tmp_path / "corpus.jsonl"
    rows = [{"text": f"filler document {n}"} for n in range(9)] + [{"text": "<|endoftext|>" + TEXT}]
    corpus.write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = CliRunner().invoke(cli, ["evaluate", str(checkpoint), "--data", str(corpus), "--json"])
    assert result.exit_code == 0, result.output
    evaluated = json.loads(result.stdout)
    assert evaluated["tokens"] == tokens
    assert -log_likelihood / tokens == pytest.approx(evaluated["loss"], abs=1e-4)


@pytest.mark.slow  # lm-eval indexes its thousands of task files first
def test_multiple_choice_accuracy_is_the_one_our_logits_give(checkpoint, tasks):
    model, tokenizer = load_model(checkpoint).eval(), from_pretrained(checkpoint / "tokenizer")
    correct = 0
    for row in QUESTIONS:
        scores = []
        for choice in row["choices"]:
            context = tokenizer.encode(row["question"])
            whole = tokenizer.encode(row["question"] + " " + choice)  # lm-eval's target delimiter is a space
            with torch.no_grad():
                log_probs = F.log_softmax(model(torch.tensor([whole[:-1]]))["logits"][0], dim=-1)
            scores.append(sum(log_probs[i - 1, whole[i]].item() for i in range(len(context), len(whole))))
        correct += max(range(len(scores)), key=scores.__getitem__) == row["answer"]
    results, _ = evaluate_tasks(checkpoint, ["cleangpt_choice"], include_path=tasks, batch_size=4, device="cpu")
    assert results["results"]["cleangpt_choice"]["acc,none"] == pytest.approx(correct / len(QUESTIONS))


@pytest.mark.slow  # lm-eval indexes its thousands of task files first
def test_generate_until_decodes_greedily_in_batches_and_stops_at_the_stop_string(checkpoint, tasks):
    results, _ = evaluate_tasks(checkpoint, ["cleangpt_generate"], include_path=tasks, batch_size=3, device="cpu")
    assert results["results"]["cleangpt_generate"]["exact_match,none"] == pytest.approx(0.5)


def test_the_adapter_is_registered_in_lm_evals_registry_and_entry_points():
    from importlib.metadata import entry_points

    from lm_eval.api.registry import get_model

    assert get_model("cleangpt") is CleanGPTLM
    (entry_point,) = entry_points(group="lm_eval.models", name="cleangpt")
    assert entry_point.load() is CleanGPTLM


@pytest.mark.slow  # lm-eval indexes its thousands of task files first
def test_cleangpt_lm_eval_prints_lm_evals_table(checkpoint, tasks):
    result = CliRunner().invoke(
        cli, ["lm-eval", str(checkpoint), "--tasks", "cleangpt_choice", "--include-path", str(tasks), "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    header = next(line for line in result.output.splitlines() if "Tasks" in line)
    assert "Metric" in header and "Value" in header
    assert any("cleangpt_choice" in line and "acc" in line for line in result.output.splitlines())


@pytest.mark.slow  # lm-eval indexes its thousands of task files first
def test_an_unknown_task_is_one_line_before_the_model_loads(checkpoint, tasks):
    result = CliRunner().invoke(
        cli, ["lm-eval", str(checkpoint), "--tasks", "cleangpt_choise", "--include-path", str(tasks)]
    )
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: lm-eval knows no task 'cleangpt_choise' (did you mean 'cleangpt_choice', 'cleangpt_rolling', "
        "'cleangpt_generate'?); define your own with --include-path DIR"
    ]


def test_lm_eval_without_the_harness_installed_says_what_to_install(checkpoint, monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec

    def find_spec(name, *arguments):  # stands in for an environment without lm-eval (a test cannot uninstall it)
        return None if name == "lm_eval" else real_find_spec(name, *arguments)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    result = CliRunner().invoke(cli, ["lm-eval", str(checkpoint), "--tasks", "hellaswag"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        'Error: cleangpt lm-eval needs the lm-evaluation-harness: pip install "cleangpt-core[eval]"'
    ]


@pytest.mark.slow  # lm-eval indexes its thousands of task files first
def test_lm_eval_outside_a_git_checkout_prints_no_git_error(checkpoint, tasks, tmp_path, monkeypatch, capfd):
    # lm-eval records the git commit of the working folder with `git describe`, whose "fatal: not a git
    # repository" went straight to the terminal's stderr (a child process's: capfd sees it, capsys would not)
    assert shutil.which("git") is not None, "this test needs git on the PATH"
    monkeypatch.chdir(tmp_path)
    assert subprocess.run(["git", "rev-parse"], capture_output=True).returncode != 0  # not inside a checkout
    capfd.readouterr()
    result = CliRunner().invoke(
        cli, ["lm-eval", str(checkpoint), "--tasks", "cleangpt_choice", "--include-path", str(tasks), "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    stderr = capfd.readouterr().err
    assert "not a git repository" not in stderr and "fatal:" not in stderr, stderr
