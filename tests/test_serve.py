"""`cleangpt serve` against real clients: OpenAI's own Python client and plain HTTP, on a server bound to
127.0.0.1 in this process. Every expected text and number comes from `cleangpt generate` or the model itself."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import httpx
import openai
import pytest
import torch
from click.testing import CliRunner

from cleangpt_core.cli.main import cli
from cleangpt_core.inspection import inspect_text
from cleangpt_core.model import get_model, save_model
from cleangpt_core.serving import Server, load_engine
from cleangpt_core.serving.background import running_server
from cleangpt_core.testing.architecture import perturb_parameters
from cleangpt_core.tokenizers import CharacterTokenizer

MODEL = "tiny"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A checkpoint of a small random Vanilla over a character vocabulary (block_size 32: prompts slide past it)."""
    root = tmp_path_factory.mktemp("serve") / MODEL
    tokenizer = CharacterTokenizer(vocab=list("abcdefgh .\n"))
    torch.manual_seed(0)
    model = get_model("Vanilla", vocab_size=tokenizer.vocab_size, n_layer=2, n_head=2, n_embd=16, block_size=32)
    save_model(perturb_parameters(model, seed=2), root)
    tokenizer.save_pretrained(root / "tokenizer")
    return root


@pytest.fixture(scope="module")
def server(run_dir):
    engine = load_engine(run_dir, max_tokens_limit=4096)
    app = Server(engine, max_request_bytes=4096).app()
    with running_server(app) as url:
        yield engine, url


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server[1] + "/v1", api_key="unused", max_retries=0)


def _generate(run_dir, prompt: str, tokens: int, seed: int, temperature: float) -> str:
    """What `cleangpt generate` prints, without its final newline."""
    options = ["--prompt", prompt, "-n", tokens, "--seed", seed, "--temperature", temperature]
    result = CliRunner().invoke(cli, ["generate", str(run_dir), *map(str, options)])
    assert result.exit_code == 0, result.output
    return result.output.removesuffix("\n")


def test_the_openai_client_gets_the_text_cleangpt_generate_gives(client, run_dir):
    response = client.completions.create(model=MODEL, prompt="abc", max_tokens=40, seed=7, temperature=0.9)
    assert "abc" + response.choices[0].text == _generate(run_dir, "abc", 40, 7, 0.9)
    # an end-of-text token ends a completion early ("stop"); otherwise it runs to max_tokens ("length")
    ended_early = response.usage.completion_tokens < 40
    assert response.choices[0].finish_reason == ("stop" if ended_early else "length")
    assert response.usage.prompt_tokens == 3


def test_streaming_with_the_openai_client_gives_the_same_text_in_pieces(client, run_dir):
    stream = client.completions.create(model=MODEL, prompt="ab", max_tokens=30, seed=3, temperature=1.0, stream=True)
    pieces = [chunk.choices[0].text for chunk in stream]
    assert len([p for p in pieces if p]) > 5
    assert "ab" + "".join(pieces) == _generate(run_dir, "ab", 30, 3, 1.0)


def test_logprobs_with_echo_are_the_models_own(client, server):
    engine = server[0]
    response = client.completions.create(model=MODEL, prompt="abcab", max_tokens=3, logprobs=2, echo=True, seed=1)
    choice = response.choices[0]
    ids = engine.tokenizer.encode(choice.text)
    with torch.no_grad():
        log_probs = torch.log_softmax(engine.model(torch.tensor([ids]))["logits"][0], dim=-1)
    logprobs = choice.logprobs
    assert logprobs.tokens == [engine.tokenizer.decode([i]) for i in ids]
    assert logprobs.token_logprobs[0] is None and logprobs.top_logprobs[0] is None
    for t in range(1, len(ids)):
        assert logprobs.token_logprobs[t] == pytest.approx(float(log_probs[t - 1, ids[t]]), abs=1e-5)
        best = log_probs[t - 1].topk(2)
        expected = {engine.tokenizer.decode([int(i)]): float(v) for v, i in zip(*best, strict=True)}
        assert logprobs.top_logprobs[t] == pytest.approx(expected, abs=1e-5)
    assert logprobs.text_offset == list(range(len(ids)))


def test_temperature_zero_is_greedy_and_a_stop_string_ends_the_text_before_it(client):
    greedy = client.completions.create(model=MODEL, prompt="abc", max_tokens=20, temperature=0).choices[0].text
    stop = greedy[5:7]
    cut = client.completions.create(model=MODEL, prompt="abc", max_tokens=20, temperature=0, stop=[stop]).choices[0]
    assert cut.text == greedy[: greedy.find(stop)]
    assert cut.finish_reason == "stop"
    streamed = client.completions.create(
        model=MODEL, prompt="abc", max_tokens=20, temperature=0, stop=stop, stream=True
    )
    assert "".join(chunk.choices[0].text for chunk in streamed) == cut.text


def test_a_bad_request_is_an_openai_error_naming_the_field(client):
    with pytest.raises(openai.BadRequestError) as error:
        client.completions.create(model=MODEL, prompt="abc", temperature=3.5)
    assert error.value.param == "temperature"
    assert "temperature" in error.value.message and "3.5" in error.value.message
    with pytest.raises(openai.BadRequestError) as error:
        client.completions.create(model=MODEL, prompt="abc", extra_body={"best_of_all": 2})
    assert error.value.param == "best_of_all" and "unknown field" in error.value.message
    with pytest.raises(openai.NotFoundError) as error:
        client.completions.create(model="gpt-5", prompt="abc")
    assert error.value.code == "model_not_found"


def test_limits_on_prompt_length_max_tokens_and_request_size(server):
    url = server[1] + "/v1/completions"
    too_long = httpx.post(url, json={"model": MODEL, "prompt": "a" * 33})
    assert too_long.status_code == 400
    assert too_long.json()["error"]["code"] == "context_length_exceeded"
    assert too_long.json()["error"]["param"] == "prompt"
    too_many = httpx.post(url, json={"model": MODEL, "prompt": "a", "max_tokens": 5000})
    assert too_many.status_code == 400 and too_many.json()["error"]["param"] == "max_tokens"
    too_big = httpx.post(url, json={"model": MODEL, "prompt": "a", "user": "x" * 5000})
    assert too_big.status_code == 413
    not_json = httpx.post(url, content=b'{"model": ', headers={"Content-Type": "application/json"})
    assert not_json.status_code == 400 and "not valid JSON" in not_json.json()["error"]["message"]
    outside = httpx.post(url, json={"model": MODEL, "prompt": [1, 2, 999]})
    assert outside.status_code == 400 and outside.json()["error"]["param"] == "prompt"


def test_eight_concurrent_streams_each_get_their_own_text(client, run_dir):
    prompts = ["abc", "ba", "h.", "ggg", "face", "d d", "cab", "e"]
    texts: dict[int, str] = {}

    def stream(number: int) -> None:
        chunks = client.completions.create(
            model=MODEL, prompt=prompts[number], max_tokens=40, seed=number, temperature=1.0, stream=True
        )
        texts[number] = prompts[number] + "".join(chunk.choices[0].text for chunk in chunks)

    threads = [threading.Thread(target=stream, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for number, prompt in enumerate(prompts):
        assert texts[number] == _generate(run_dir, prompt, 40, number, 1.0)


def test_a_client_that_disconnects_stops_its_generation(server):
    engine, url = server
    # greedy decoding of this prompt never meets the end-of-text token: it would run all 4000 tokens
    body = {"model": MODEL, "prompt": "abc", "max_tokens": 4000, "stream": True, "temperature": 0}
    before = engine.generated_tokens
    with httpx.Client() as http, http.stream("POST", url + "/v1/completions", json=body) as response:
        lines = response.iter_lines()
        assert next(lines).startswith("data: ")
    time.sleep(0.5)  # the server notices the closed connection and the generation stops at its next token
    stopped_at = engine.generated_tokens
    time.sleep(0.5)
    assert engine.generated_tokens == stopped_at
    assert stopped_at - before < 4000


def test_a_client_that_gives_up_on_a_whole_answer_stops_its_generation(server):
    engine, url = server
    body = {"model": MODEL, "prompt": "abc", "max_tokens": 4000, "temperature": 0}  # no end-of-text: see above
    before = engine.generated_tokens
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(url + "/v1/completions", json=body, timeout=httpx.Timeout(5.0, read=0.3))
    time.sleep(0.5)
    stopped_at = engine.generated_tokens
    time.sleep(0.5)
    assert engine.generated_tokens == stopped_at
    assert stopped_at - before < 4000


def test_the_inspection_endpoint_returns_what_cleangpt_inspect_computes(server):
    engine, url = server
    response = httpx.post(url + "/v1/inspect", json={"prompt": "abcabc", "top_k": 3})
    assert response.status_code == 200
    assert response.json() == json.loads(json.dumps(inspect_text(engine.model, engine.tokenizer, "abcabc", top_k=3)))


def test_an_api_key_is_required_when_the_server_has_one(run_dir):
    app = Server(load_engine(run_dir), api_key="s3cret").app()
    with running_server(app) as url:
        refused = openai.OpenAI(base_url=url + "/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            refused.models.list()
        allowed = openai.OpenAI(base_url=url + "/v1", api_key="s3cret", max_retries=0)
        assert [model.id for model in allowed.models.list()] == [MODEL]
        assert httpx.get(url + "/").status_code == 200  # the page itself is public; its API calls send the key


def test_the_playground_page_and_its_files_are_served_from_the_package(server):
    url = server[1]
    page = httpx.get(url + "/")
    assert page.status_code == 200 and "cleanGPT playground" in page.text
    for name in ("app.js", "style.css"):
        asset = httpx.get(f"{url}/{name}")
        assert asset.status_code == 200 and "http" not in asset.text.split("fetch(")[0]  # nothing from a CDN
    assert '<script src="http' not in page.text and '<link rel="stylesheet" href="http' not in page.text


@pytest.mark.slow  # a fresh interpreter imports torch
def test_serve_warns_when_it_listens_beyond_this_machine(run_dir):
    process = subprocess.Popen(
        [sys.executable, "-m", "cleangpt_core", "serve", str(run_dir), "--host", "0.0.0.0", "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = process.stderr.readline()
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert first.startswith("warning: listening on 0.0.0.0") and "--api-key" in first


def test_start_up_imports_neither_the_web_stack_nor_torch():
    heavy = ("starlette", "uvicorn", "torch", "matplotlib")
    script = (
        "import sys\n"
        "from cleangpt_core.cli.main import cli\n"
        "for args in (['--help'], ['serve', '--help'], ['inspect', '--help']):\n"
        "    try:\n        cli.main(args, prog_name='cleangpt', standalone_mode=False)\n"
        "    except SystemExit:\n        pass\n"
        f"print(sorted(name for name in {heavy!r} if name in sys.modules), file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "cleangpt serve" not in result.stderr and "Usage: cleangpt inspect" in result.stdout
    assert result.stderr.strip().splitlines()[-1] == "[]"


# -- bad requests: every refusal is a 4xx with OpenAI's error object (issue 35) --------------------------------


def _post(url: str, body: object | bytes, **headers: str) -> httpx.Response:
    """POST `body` as JSON (ASCII-escaped, so a lone surrogate travels as JSON's own \\ud800 escape)."""
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(url, content=content, headers={"Content-Type": "application/json", **headers})


def _error_of(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


UNKNOWN_CHARACTERS = [  # (prompt, the first character outside the vocabulary "abcdefgh .\n", its offset)
    ("€", "€", 0),
    ("ab😀", "😀", 2),
    ("a\x00b", "\x00", 1),
    ("ab\ud800", "\ud800", 2),
    ("ROMEO: é 你好", "R", 0),
    ("a é 你好", "é", 2),
]


@pytest.mark.parametrize("route", ["/v1/completions", "/v1/inspect", "/tokenize"])
@pytest.mark.parametrize(("prompt", "character", "offset"), UNKNOWN_CHARACTERS)
def test_a_character_outside_the_vocabulary_is_a_400_naming_it_and_its_offset(server, route, prompt, character, offset):
    body = {"prompt": prompt, **({"model": MODEL} if route == "/v1/completions" else {})}
    error = _error_of(_post(server[1] + route, body), 400)
    assert error["param"] == "prompt"
    assert repr(character) in error["message"] and f"offset {offset}" in error["message"]


def test_the_openai_client_gets_an_unknown_character_as_a_bad_request(client):
    with pytest.raises(openai.BadRequestError) as error:
        client.completions.create(model=MODEL, prompt="ab €")
    assert error.value.param == "prompt" and "'€'" in error.value.message


def test_json_nested_too_deep_or_an_integer_too_long_to_read_is_a_400(server):
    with running_server(Server(server[0]).app()) as url:  # the default body limit, 1 MiB
        deep = _error_of(_post(url + "/v1/completions", b"[" * 100_000 + b"]" * 100_000), 400)
        digits = b'{"model": "tiny", "prompt": "ab", "max_tokens": ' + b"9" * 5000 + b"}"
        long_number = _error_of(_post(url + "/v1/completions", digits), 400)
    assert "deeply" in deep["message"]
    assert "number" in long_number["message"] and "digits" in long_number["message"]


def test_routing_refusals_are_openai_errors_too(server):
    url = server[1]
    missing = _error_of(httpx.get(url + "/v1/embeddings"), 404)
    assert "/v1/embeddings" in missing["message"]
    wrong_method = httpx.get(url + "/v1/completions")
    assert "POST" in _error_of(wrong_method, 405)["message"] and wrong_method.headers["allow"] == "POST"
    _error_of(httpx.post(url + "/", json={}), 405)
    assert httpx.get(url + "/favicon.ico").status_code == 204
    too_big = _post(url + "/v1/completions", {"model": MODEL, "prompt": "a", "user": "x" * 5000})
    assert _error_of(too_big, 413)["type"] == "invalid_request_error"


def test_an_unexpected_fault_is_a_json_500_not_a_text_page(run_dir):
    app = Server(load_engine(run_dir)).app()

    async def broken(_request):  # a fault of no route of ours: the handlers must still answer JSON
        raise RuntimeError("a fault nobody foresaw")

    app.add_route("/broken", broken)
    with running_server(app) as url:
        error = _error_of(httpx.get(url + "/broken"), 500)
    assert error["type"] == "server_error" and "fault nobody foresaw" not in error["message"]


def test_past_its_waiting_room_the_server_answers_429(run_dir):
    # a stream that would run for minutes holds the one place (greedy "abc" never meets the end-of-text token)
    app = Server(load_engine(run_dir, max_tokens_limit=10**6), max_concurrent=1, max_waiting=0).app()
    body = {"model": MODEL, "prompt": "abc", "max_tokens": 10**6, "stream": True, "temperature": 0}
    with (
        running_server(app) as url,
        httpx.Client() as http,
        http.stream("POST", url + "/v1/completions", json=body) as running,
    ):
        lines = running.iter_lines()  # held: a dropped iterator closes the stream, which frees the place
        assert next(lines).startswith("data: ")
        busy = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        with pytest.raises(openai.RateLimitError) as error:
            busy.completions.create(model=MODEL, prompt="ab", max_tokens=2)
        assert error.value.code == "rate_limit_exceeded"


def test_an_inspection_past_the_weight_bound_is_a_400_naming_the_bound(run_dir):
    # 2 layers x 2 heads: 16 tokens make 1,024 attention weights, 15 make 900
    app = Server(load_engine(run_dir, max_inspect_weights=1000)).app()
    with running_server(app) as url:
        error = _error_of(_post(url + "/v1/inspect", {"prompt": "abcdefgh" * 2}), 400)
        assert error["param"] == "prompt" and error["code"] == "inspection_too_large"
        assert "1,024" in error["message"] and "at most 15 tokens" in error["message"]
        assert _post(url + "/v1/inspect", {"prompt": ("abcdefgh" * 2)[:15]}).is_success


@pytest.mark.slow  # a megabytes-large inspection
def test_a_large_inspection_does_not_stall_other_requests(tmp_path):
    root = tmp_path / "wide"
    tokenizer = CharacterTokenizer(vocab=list("abcdefgh .\n"))
    model = get_model("Vanilla", vocab_size=tokenizer.vocab_size, n_layer=4, n_head=8, n_embd=32, block_size=512)
    save_model(perturb_parameters(model, seed=1), root)
    tokenizer.save_pretrained(root / "tokenizer")
    with running_server(Server(load_engine(root, max_inspect_weights=10**7)).app()) as url:
        answered: list[float] = []
        done = threading.Event()

        def inspect() -> None:  # 500^2 x 4 x 8 = 8 million weights, ~60 MB of JSON
            started = time.perf_counter()
            try:
                body = {"prompt": "abcdefgh " * 55 + "abcde"}
                if httpx.post(url + "/v1/inspect", json=body, timeout=120).is_success:
                    answered.append(time.perf_counter() - started)
            finally:
                done.set()

        worker = threading.Thread(target=inspect)
        worker.start()
        slowest = 0.0
        with httpx.Client(timeout=120) as http:
            while not done.is_set():
                started = time.perf_counter()
                assert http.get(url + "/v1/models").is_success
                slowest = max(slowest, time.perf_counter() - started)
                time.sleep(0.01)
        worker.join()
    assert answered, "the inspection failed"
    # measured on 2 busy cores: 0.07 s at worst here, against 0.18 s with the JSON encoded on the event loop
    assert slowest < min(0.5, answered[0] / 20), (slowest, answered)


# -- who may call: Host, Origin and Content-Type (issue 35) ------------------------------------------------------


def test_a_request_from_a_foreign_page_or_a_rebound_name_is_refused(server):
    url = server[1] + "/v1/completions"
    body = json.dumps({"model": MODEL, "prompt": "ab", "max_tokens": 2}).encode()
    hostile = {"Host": "attacker.example", "Origin": "http://attacker.example", "Content-Type": "text/plain"}
    assert _error_of(httpx.post(url, content=body, headers=hostile), 403)["code"] == "host_not_allowed"
    foreign = {"Origin": "http://attacker.example", "Content-Type": "application/json"}
    error = _error_of(httpx.post(url, content=body, headers=foreign), 403)
    assert error["code"] == "origin_not_allowed" and "--allow-origin" in error["message"]
    plain = _error_of(httpx.post(url, content=body, headers={"Content-Type": "text/plain"}), 415)
    assert "application/json" in plain["message"]
    same_page = {"Origin": server[1], "Content-Type": "application/json"}  # the playground's own requests
    assert httpx.post(url, content=body, headers=same_page).is_success
    assert httpx.post(url, content=body, headers={"Host": "localhost", "Content-Type": "application/json"}).is_success


def test_an_origin_allowed_on_purpose_may_call_the_api_across_origins(run_dir):
    app = Server(load_engine(run_dir), allowed_origins=("http://notebook.example",)).app()
    with running_server(app) as url:
        origin = {"Origin": "http://notebook.example"}
        asks = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
        preflight = httpx.options(url + "/v1/completions", headers={**origin, **asks})
        assert preflight.status_code == 200
        answer = _post(url + "/v1/completions", {"model": MODEL, "prompt": "ab", "max_tokens": 2}, **origin)
        assert answer.is_success and answer.headers["access-control-allow-origin"] == "http://notebook.example"
        _error_of(_post(url + "/v1/completions", {"model": MODEL, "prompt": "ab"}, Origin="http://other.example"), 403)


def test_a_server_bound_to_every_interface_answers_to_any_host_name():
    from cleangpt_core.serving.guard import host_names

    assert host_names("0.0.0.0") is None
    assert host_names("127.0.0.1") >= {"localhost", "127.0.0.1", "::1"}
    assert host_names("192.168.1.5") == {"192.168.1.5"}
