"""Model directories and Hugging Face folders under attack: a config that asks for any size, weights that
are a pickle, paths that lead out of the folder, damaged indexes (issue 25, faults 5, 8 and 9); sizes too large to
exist, damaged vocabularies, a run whose `latest` leads out, a symlinked weights file (issue 35, item 9 and the
smaller ones), and a tokenizer that is not the model's (issue 36)."""

from __future__ import annotations

import json
import pickle
import shutil
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from cleangpt_core.cli.main import cli
from cleangpt_core.errors import CheckpointError, HFConversionError
from cleangpt_core.huggingface.folder import import_hf
from cleangpt_core.huggingface.weights import save_hf_pretrained
from cleangpt_core.model import get_model, load_model, save_model

FIXTURE = Path(__file__).parent / "fixtures" / "gpt2"
SHAPE = {"vocab_size": 50257, "block_size": 16, "n_layer": 2, "n_head": 2, "n_embd": 16}


@pytest.fixture
def model_dir(tmp_path):
    return save_model(get_model("Vanilla", **SHAPE), tmp_path / "model")


@pytest.fixture
def hf_folder(tmp_path):
    folder = save_hf_pretrained(get_model("Vanilla", **SHAPE), tmp_path / "hf")
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(FIXTURE / name, folder / name)
    return folder


def set_config(folder: Path, **fields) -> None:
    config = json.loads((folder / "config.json").read_text())
    config.update(fields)
    (folder / "config.json").write_text(json.dumps(config))


# --- 5: the weights' header is compared with the config before a model is built ----------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"n_layer": 1_000_000}, "holds the weights of 2 blocks, but its config asks for n_layer=1000000"),
        ({"vocab_size": 10**12}, r"weight has shape \(50257, 16\), but the config makes it \(1000000000000, 16\)"),
        ({"vocab_size": 20_000_000}, r"has shape \(50257, 16\), but the config makes it \(20000000, 16\)"),
    ],
)
def test_a_config_that_does_not_fit_its_weights_fails_fast_without_building_the_model(model_dir, fields, message):
    set_config(model_dir, **fields)
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match=message):
        load_model(model_dir)
    assert time.perf_counter() - start < 30  # building the model took minutes and gigabytes, or never ended


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"n_layer": 1_000_000}, "holds the weights of 2 blocks, but its config asks for n_layer=1000000"),
        ({"vocab_size": 10**12}, r"transformer.wte.weight: GPT-2 tensor has shape \(50257, 16\)"),
    ],
)
def test_importing_a_folder_whose_config_does_not_fit_its_weights_fails_fast(hf_folder, tmp_path, fields, message):
    set_config(hf_folder, **fields)
    start = time.perf_counter()
    with pytest.raises(HFConversionError, match=message):
        import_hf(hf_folder, tmp_path / "imported")
    assert time.perf_counter() - start < 30  # building the model took minutes and gigabytes, or never ended
    assert not (tmp_path / "imported").exists()


# --- 9: a pickle under the safetensors name is named, never unpickled ------------------------------------------


class _Bomb:
    def __reduce__(self):
        return (Path.touch, (Path("/tmp/cleangpt-issue25-unpickled"),))


def test_a_pickle_renamed_model_safetensors_is_named_and_never_unpickled(model_dir, hf_folder, tmp_path):
    for weights in (model_dir / "model.safetensors", hf_folder / "model.safetensors"):
        weights.write_bytes(pickle.dumps({"weights": _Bomb()}))
    with pytest.raises(CheckpointError, match="is not a readable safetensors file"):
        load_model(model_dir)
    with pytest.raises(HFConversionError, match="is not a readable safetensors file"):
        import_hf(hf_folder, tmp_path / "imported")
    assert not Path("/tmp/cleangpt-issue25-unpickled").exists()


# --- 8 and 9: a sharded folder's index ---------------------------------------------------------------------------


def shard_index(folder: Path, weight_map) -> None:
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))


@pytest.mark.parametrize("target", ["ABSOLUTE", "../outside.safetensors", "sub/../../outside.safetensors"])
def test_a_weight_map_naming_a_file_outside_the_folder_is_refused(hf_folder, tmp_path, target):
    outside = tmp_path / "outside.safetensors"
    shutil.copy(hf_folder / "model.safetensors", outside)
    target = str(outside) if target == "ABSOLUTE" else target
    shard_index(hf_folder, {"transformer.wte.weight": target})
    with pytest.raises(HFConversionError, match="which is not a file of"):
        import_hf(hf_folder, tmp_path / "imported")


@pytest.mark.parametrize("index", ["{not json", "[]", '{"weight_map": [1, 2]}', '{"weight_map": {"a": 3}}'])
def test_a_malformed_safetensors_index_is_one_line(hf_folder, tmp_path, index):
    (hf_folder / "model.safetensors.index.json").write_text(index)
    result = CliRunner().invoke(cli, ["import", str(hf_folder), str(tmp_path / "imported")])
    assert result.exit_code == 1 and "unexpected" not in result.output
    assert "model.safetensors.index.json" in result.output and len(result.output.strip().splitlines()) == 1


# --- 9: folder paths without a name; 12: a saved cleanGPT config that contradicts the folder ----------------------


def test_import_and_export_into_the_current_directory_work_or_are_named(hf_folder, tmp_path, monkeypatch):
    monkeypatch.chdir(hf_folder)
    result = CliRunner().invoke(cli, ["import", "."])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "hf-cleangpt" / "model.safetensors").is_file()
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    monkeypatch.chdir(busy)
    result = CliRunner().invoke(cli, ["export", str(tmp_path / "hf-cleangpt"), "."])
    assert result.exit_code == 1 and "already exists and is not empty" in result.output
    assert "empty name" not in result.output


def test_a_saved_cleangpt_config_that_contradicts_the_folder_is_refused(hf_folder, tmp_path):
    from cleangpt_core.config import GPTConfig

    saved = GPTConfig(model_type="Vanilla", **SHAPE).model_dump(mode="json")
    set_config(hf_folder, cleangpt_config={**saved, "logit_softcap": 30.0})
    with pytest.raises(HFConversionError, match="cleangpt_config does not describe a Vanilla: .*logit_softcap"):
        import_hf(hf_folder, tmp_path / "a")
    set_config(hf_folder, cleangpt_config={**saved, "n_layer": 3})
    with pytest.raises(HFConversionError, match=r"contradicts the folder's own fields \(n_layer: 2 vs 3"):
        import_hf(hf_folder, tmp_path / "b")
    set_config(hf_folder, cleangpt_config=saved)
    import_hf(hf_folder, tmp_path / "c")  # the exported one imports


def test_of_two_exports_racing_into_one_folder_only_one_reports_success(hf_folder, tmp_path):
    import subprocess
    import sys

    checkpoint = import_hf(hf_folder, tmp_path / "checkpoint")
    command = [sys.executable, "-m", "cleangpt_core", "export", str(checkpoint), str(tmp_path / "out")]
    racing = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outcomes = [(process.wait(timeout=300), process.stderr.read()) for process in racing]
    assert sorted(code for code, _ in outcomes) == [0, 1], outcomes
    assert any("choose a new folder" in error for _, error in outcomes)
    assert (tmp_path / "out" / "model.safetensors").is_file()


def test_a_folder_written_without_replacing_refuses_a_folder_that_filled_meanwhile(tmp_path):
    from cleangpt_core.checkpoints.atomic_write import atomic_target

    target = tmp_path / "target"
    with pytest.raises(FileExistsError), atomic_target(target, directory=True, replace=False) as folder:
        (folder / "mine.txt").write_text("mine")
        target.mkdir()
        (target / "theirs.txt").write_text("theirs")  # another writer finished first
    assert [p.name for p in target.iterdir()] == ["theirs.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["target"]  # nothing half-written left beside it


# --- issue 35, 9: sizes too large to exist, damaged vocabularies: a named error, not "unexpected" -------------------


def run_cli(*arguments: str):
    result = CliRunner().invoke(cli, list(arguments))
    lines = result.output.strip().splitlines()
    return result.exit_code, lines


@pytest.mark.parametrize("n_embd", [2**40, 2**62])
def test_a_config_whose_tensors_cannot_exist_is_a_named_error(model_dir, hf_folder, tmp_path, n_embd):
    set_config(model_dir, n_embd=n_embd, n_head=1)
    set_config(hf_folder, n_embd=n_embd, n_head=1)
    with pytest.raises(CheckpointError, match=f"n_embd={n_embd}.*describes tensors too large to exist"):
        load_model(model_dir)
    with pytest.raises(HFConversionError, match=f"n_embd={n_embd}.*describes tensors too large to exist"):
        import_hf(hf_folder, tmp_path / "imported")
    code, lines = run_cli("import", str(hf_folder), str(tmp_path / "imported"))
    assert code == 1 and len(lines) == 1 and "unexpected" not in lines[0] and "too large to exist" in lines[0]
    code, lines = run_cli("train", "--init-from", str(hf_folder), "--dry-run")
    assert code == 1 and len(lines) == 1 and "unexpected" not in lines[0] and "too large to exist" in lines[0]


@pytest.fixture
def exported_folder(tmp_path):
    """A folder as `cleangpt export` writes it for a character-level Vanilla (cleanGPT's tokenizer files in it)."""
    from cleangpt_core.huggingface.folder import export_hf
    from cleangpt_core.tokenizers import CharacterTokenizer

    tokenizer = CharacterTokenizer(vocab=list("abcdefgh "))
    checkpoint = save_model(get_model("Vanilla", **{**SHAPE, "vocab_size": tokenizer.vocab_size}), tmp_path / "ck")
    tokenizer.save_pretrained(checkpoint / "tokenizer")
    return export_hf(checkpoint, tmp_path / "exported")


@pytest.mark.parametrize("value", ["x", 1.5, None])
def test_importing_a_vocabulary_with_a_non_integer_id_is_a_named_error(exported_folder, tmp_path, value):
    vocab = json.loads((exported_folder / "vocab.json").read_text())
    (exported_folder / "vocab.json").write_text(json.dumps({**vocab, "a": value}))
    code, lines = run_cli("import", str(exported_folder), str(tmp_path / "imported"))
    assert code == 1 and len(lines) == 1 and "unexpected" not in lines[0]
    assert "vocab.json" in lines[0] and "entry 'a' has the id" in lines[0] and "not an integer" in lines[0]


# --- issue 35, smaller: --init-from a run whose `latest` leads out; a symlinked weights file ------------------------


def test_init_from_a_run_whose_latest_leads_out_names_the_pointer(model_dir, tmp_path):
    other = tmp_path / "other" / "checkpoints" / "step-00000001"
    shutil.copytree(model_dir, other)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "latest").write_text("../other/checkpoints/step-00000001\n")
    for arguments in (["train", "--init-from", str(run), "--dry-run"], ["import", str(run), str(tmp_path / "out")]):
        code, lines = run_cli(*arguments)
        assert code == 1 and len(lines) == 1, lines
        assert "latest names '../other/checkpoints/step-00000001', which is not a checkpoint of this run" in lines[0]
        assert "no config.json" not in lines[0]


def test_a_symlinked_weights_file_is_named_not_an_absent_index(hf_folder, tmp_path):
    outside = tmp_path / "elsewhere.safetensors"
    (hf_folder / "model.safetensors").rename(outside)
    (hf_folder / "model.safetensors").symlink_to(outside)
    with pytest.raises(HFConversionError) as error:
        import_hf(hf_folder, tmp_path / "imported")
    message = str(error.value)
    assert "index.json" not in message
    assert f"{hf_folder / 'model.safetensors'} is a link to {outside}" in message


# --- issue 36: a tokenizer that is not the model's ---------------------------------------------------------------


def folder_with_tokenizer(tmp_path: Path, model_vocab: int, tokenizer_characters: str) -> Path:
    from cleangpt_core.tokenizers import CharacterTokenizer

    folder = save_hf_pretrained(get_model("Vanilla", **{**SHAPE, "vocab_size": model_vocab}), tmp_path / "hf-char")
    CharacterTokenizer(vocab=list(tokenizer_characters)).save_pretrained(folder)
    return folder


@pytest.mark.parametrize(("model_vocab", "characters"), [(50257, "a"), (9, "abcdefghijklmnop"), (300, "abcdefgh")])
def test_import_refuses_a_tokenizer_whose_size_is_not_the_models_vocabulary(tmp_path, model_vocab, characters):
    folder = folder_with_tokenizer(tmp_path, model_vocab, characters)
    ids = len(characters) + 2  # the character tokenizer adds <pad> and <eos>
    code, lines = run_cli("import", str(folder), str(tmp_path / "imported"))
    assert code == 1 and len(lines) == 1, lines
    assert f"has {ids} ids but the model's vocabulary has {model_vocab}" in lines[0]
    assert not (tmp_path / "imported").exists()


@pytest.mark.parametrize(("model_vocab", "characters"), [(64, "abcdefgh"), (12, "abcdefghij"), (128, "xyz")])
def test_import_takes_a_vocabulary_padded_for_speed(tmp_path, model_vocab, characters):
    folder = folder_with_tokenizer(tmp_path, model_vocab, characters)
    import_hf(folder, tmp_path / "imported")
    assert load_model(tmp_path / "imported").config.vocab_size == model_vocab


def test_import_takes_gpt2s_tokenizer_with_nanogpts_padded_vocabulary(tmp_path):
    folder = save_hf_pretrained(get_model("Vanilla", **{**SHAPE, "vocab_size": 50304}), tmp_path / "hf")
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(FIXTURE / name, folder / name)
    import_hf(folder, tmp_path / "imported")
