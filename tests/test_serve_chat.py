"""`cleangpt serve`'s chat completions and OpenAI's common parameters (n, best_of, penalties, logit_bias, suffix,
user), through OpenAI's own Python client against a server on 127.0.0.1. Expected texts come from
`cleangpt generate` or from the model itself, step by step."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
import torch
from click.testing import CliRunner
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from cleangpt_core.cli.main import cli
from cleangpt_core.model import get_model, save_model
from cleangpt_core.serving import Server, load_engine
from cleangpt_core.serving.background import running_server
from cleangpt_core.serving.chat import PLAIN_TEMPLATE, load_chat_template
from cleangpt_core.testing.architecture import perturb_parameters
from cleangpt_core.tokenizers import CharacterTokenizer, HFTokenizer

MODEL = "chatty"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A small random Vanilla over letters, so the plain chat template's role names encode."""
    root = tmp_path_factory.mktemp("chat") / MODEL
    tokenizer = CharacterTokenizer(vocab=list("abcdefghijklmnopqrstuvwxyz :.\n"))
    torch.manual_seed(0)
    model = get_model("Vanilla", vocab_size=tokenizer.vocab_size, n_layer=2, n_head=2, n_embd=16, block_size=64)
    save_model(perturb_parameters(model, seed=5), root)
    tokenizer.save_pretrained(root / "tokenizer")
    return root


@pytest.fixture(scope="module")
def served(run_dir):
    engine = load_engine(run_dir)
    with running_server(Server(engine).app()) as url:
        yield engine, url


@pytest.fixture
def client(served):
    return openai.OpenAI(base_url=served[1] + "/v1", api_key="unused", max_retries=0)


def _generate(run_dir, prompt: str, tokens: int, seed: int, temperature: float) -> str:
    """The text `cleangpt generate` adds after `prompt`."""
    options = ["--prompt", prompt, "-n", tokens, "--seed", seed, "--temperature", temperature]
    result = CliRunner().invoke(cli, ["generate", str(run_dir), *map(str, options)])
    assert result.exit_code == 0, result.output
    return result.output.removesuffix("\n").removeprefix(prompt)


def test_a_chat_completion_continues_the_plain_template_as_cleangpt_generate_does(client, run_dir):
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi there"}]
    response = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=20, seed=3, temperature=0.9)
    prompt = "system: be brief\nuser: hi there\nassistant:"
    choice = response.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == _generate(run_dir, prompt, 20, 3, 0.9)
    assert response.object == "chat.completion" and response.usage.prompt_tokens == len(prompt)
    assert choice.finish_reason == ("stop" if response.usage.completion_tokens < 20 else "length")


def test_a_streamed_chat_gives_the_same_text_with_the_role_first(client):
    messages = [{"role": "user", "content": "abc"}]
    whole = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=25, seed=1)
    chunks = list(client.chat.completions.create(model=MODEL, messages=messages, max_tokens=25, seed=1, stream=True))
    assert chunks[0].object == "chat.completion.chunk" and chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == whole.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason


def test_a_chat_without_max_tokens_fills_the_rest_of_the_context(client):
    response = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "ab"}], seed=0)
    # the plain template makes "user: ab\nassistant:" (19 tokens) of the 64-token context
    assert response.usage.prompt_tokens == 19 and response.usage.completion_tokens <= 64 - 19


def test_a_chat_template_file_replaces_the_plain_one(run_dir, tmp_path):
    template = tmp_path / "bare.jinja"
    template.write_text("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    with running_server(Server(load_engine(run_dir, chat_template=template)).app()) as url:
        chat = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        response = chat.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "abc"}], max_tokens=15, seed=2, temperature=1.0
        )
    assert response.choices[0].message.content == _generate(run_dir, "abc", 15, 2, 1.0)


OWN_TEMPLATE = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}<|assistant|>"


@pytest.mark.parametrize("where", ["tokenizer_config.json", "chat_template.jinja"])
def test_an_hf_tokenizers_own_chat_template_travels_with_the_checkpoint_and_is_used(tmp_path, where):
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|end|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    backend.train_from_iterator(["the quick brown fox jumps over the lazy dog"] * 20, trainer=trainer)
    source = tmp_path / "source"
    source.mkdir()
    backend.save(str(source / "tokenizer.json"))
    config = {"eos_token": "<|end|>"}
    if where == "chat_template.jinja":
        (source / where).write_text(OWN_TEMPLATE)
    else:
        config["chat_template"] = OWN_TEMPLATE
    (source / "tokenizer_config.json").write_text(json.dumps(config))
    tokenizer = HFTokenizer(str(source))
    root = tmp_path / "hfchat"
    torch.manual_seed(0)
    model = get_model("Vanilla", vocab_size=tokenizer.vocab_size, n_layer=1, n_head=2, n_embd=16, block_size=64)
    save_model(perturb_parameters(model, seed=1), root)
    tokenizer.save_pretrained(root / "tokenizer")  # the checkpoint's copy keeps the template
    engine = load_engine(root)
    assert engine.chat_template.source == OWN_TEMPLATE
    with running_server(Server(engine).app()) as url:
        chat = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        response = chat.chat.completions.create(
            model="hfchat", messages=[{"role": "user", "content": "the fox"}], max_tokens=6, seed=1, temperature=1.0
        )
    prompt = "<|user|>the fox<|assistant|>"
    assert response.usage.prompt_tokens == len(tokenizer.encode(prompt))
    assert response.choices[0].message.content == _generate(root, prompt, 6, 1, 1.0)


def test_without_a_template_of_its_own_a_tokenizer_gets_the_plain_one(served):
    assert load_chat_template(served[0].tokenizer).source == PLAIN_TEMPLATE


def test_n_choices_are_seeded_one_after_another(client, run_dir):
    response = client.completions.create(model=MODEL, prompt="abc", max_tokens=15, n=3, seed=10, temperature=1.0)
    assert [c.index for c in response.choices] == [0, 1, 2]
    assert [c.text for c in response.choices] == [_generate(run_dir, "abc", 15, 10 + i, 1.0) for i in range(3)]
    two = client.completions.create(model=MODEL, prompt=["ab", "ba"], max_tokens=5, n=2, seed=4, best_of=2)
    assert [c.index for c in two.choices] == [0, 1, 2, 3] and two.usage.prompt_tokens == 4
    assert two.choices[3].text == _generate(run_dir, "ba", 5, 5, 1.0)


def test_streamed_choices_carry_their_index(client, run_dir):
    chunks = client.completions.create(model=MODEL, prompt="ab", max_tokens=12, n=2, seed=8, stream=True)
    texts = {0: "", 1: ""}
    for chunk in chunks:
        texts[chunk.choices[0].index] += chunk.choices[0].text
    assert texts == {i: _generate(run_dir, "ab", 12, 8 + i, 1.0) for i in range(2)}


def test_best_of_returns_the_choices_with_the_highest_log_probability_per_token(client, run_dir):
    response = client.completions.create(model=MODEL, prompt="abc", max_tokens=10, best_of=4, n=2, seed=20)
    candidates, tokens = [], 0
    for seed in range(20, 24):
        alone = client.completions.create(model=MODEL, prompt="abc", max_tokens=10, seed=seed, logprobs=0)
        choice = alone.choices[0]
        candidates.append((sum(choice.logprobs.token_logprobs) / len(choice.logprobs.token_logprobs), choice.text))
        tokens += alone.usage.completion_tokens
    best = sorted(candidates, key=lambda candidate: -candidate[0])[:2]
    assert [c.text for c in response.choices] == [text for _, text in best]
    assert [c.index for c in response.choices] == [0, 1]
    assert response.usage.completion_tokens == tokens  # every candidate's tokens, as OpenAI counts them


def test_neutral_values_of_every_common_parameter_change_nothing(client, run_dir):
    response = client.completions.create(
        model=MODEL,
        prompt="abc",
        max_tokens=15,
        seed=6,
        temperature=0.8,
        presence_penalty=0,
        frequency_penalty=0,
        logit_bias={},
        best_of=1,
        suffix="",
        user="someone",
        stop=None,
    )
    assert response.choices[0].text == _generate(run_dir, "abc", 15, 6, 0.8)


def _greedy_with_penalties(engine, prompt: str, tokens: int, presence: float, frequency: float) -> str:
    """Greedy decoding with OpenAI's penalty formula, written out here: one full forward pass per token."""
    ids = engine.tokenizer.encode(prompt)
    counts = torch.zeros(engine.model.config.vocab_size)
    new = []
    with torch.no_grad():
        for _ in range(tokens):
            logits = engine.model(torch.tensor([ids[-64:]]))["logits"][0, -1]
            token = int((logits - counts * frequency - (counts > 0).float() * presence).argmax())
            counts[token] += 1
            ids.append(token)
            new.append(token)
    return engine.tokenizer.decode(new)


def test_presence_and_frequency_penalties_lower_the_tokens_already_drawn(client, served):
    engine = served[0]
    plain = client.completions.create(model=MODEL, prompt="ab", max_tokens=30, temperature=0).choices[0].text
    penalised = client.completions.create(
        model=MODEL, prompt="ab", max_tokens=30, temperature=0, presence_penalty=1.5, frequency_penalty=0.5
    )
    expected = _greedy_with_penalties(engine, "ab", 30, 1.5, 0.5)
    assert penalised.choices[0].text == expected[: len(penalised.choices[0].text)] and penalised.choices[0].text
    assert penalised.choices[0].text != plain
    assert len(set(penalised.choices[0].text)) > len(set(plain))


def test_logit_bias_forces_a_token(client, served):
    h = served[0].tokenizer.encode("h")[0]
    response = client.completions.create(model=MODEL, prompt="ab", max_tokens=8, seed=0, logit_bias={str(h): 100})
    assert response.choices[0].text == "h" * 8


@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"best_of": 2, "n": 3}, "best_of"),
        ({"best_of": 3, "stream": True}, "best_of"),
        ({"suffix": "the end"}, "suffix"),
        ({"logit_bias": {"9999": 5}}, "logit_bias"),
        ({"logit_bias": {"1": 500}}, "logit_bias"),
        ({"presence_penalty": 3}, "presence_penalty"),
        ({"n": 50}, "n"),
    ],
)
def test_a_value_the_server_cannot_honour_is_refused_naming_the_field(client, options, param):
    with pytest.raises(openai.BadRequestError) as error:
        client.completions.create(model=MODEL, prompt="ab", max_tokens=2, **options)
    assert error.value.param == param


def test_chat_logprobs_are_those_of_the_same_completion(client):
    messages = [{"role": "user", "content": "ab"}]
    chat = client.chat.completions.create(
        model=MODEL, messages=messages, max_tokens=6, seed=2, logprobs=True, top_logprobs=2
    ).choices[0]
    completion = client.completions.create(
        model=MODEL, prompt="user: ab\nassistant:", max_tokens=6, seed=2, logprobs=2
    ).choices[0]
    content = chat.logprobs.content
    assert "".join(entry.token for entry in content) == chat.message.content == completion.text
    assert [entry.logprob for entry in content] == completion.logprobs.token_logprobs
    assert [{t.token: t.logprob for t in entry.top_logprobs} for entry in content] == completion.logprobs.top_logprobs
    streamed = client.chat.completions.create(
        model=MODEL, messages=messages, max_tokens=6, seed=2, logprobs=True, stream=True
    )
    pieces = [chunk.choices[0].logprobs for chunk in streamed if chunk.choices[0].logprobs]
    tokens = [entry.token for piece in pieces for entry in piece.content]
    assert tokens == [entry.token for entry in content]


def test_chat_refuses_what_it_cannot_honour_with_openai_errors(client):
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "ab"}], top_logprobs=2)
    assert error.value.param == "top_logprobs"
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "ABC"}])
    assert error.value.param == "messages" and "'A'" in error.value.message
    assert "offset 6" in error.value.message and "plain role-prefixed template" in error.value.message
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-5", messages=[{"role": "user", "content": "ab"}])


def test_tokenize_takes_the_model_field_as_vllms_does(served):
    url = served[1] + "/tokenize"
    assert httpx.post(url, json={"model": MODEL, "prompt": "ab"}).json()["tokens"] == served[0].tokenizer.encode("ab")
    assert httpx.post(url, json={"model": "other", "prompt": "ab"}).status_code == 404
