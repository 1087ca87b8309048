"""Load on `cleangpt serve` beside `transformers serve` (with and without its continuous batching), on the same
exported model and the same requests: 1, 4, 8 and 16 concurrent streaming clients, for a character-level model
(the main job's width) and a GPT-2-vocabulary model. Prints a markdown table: aggregate tokens/s, median time
to first token, inter-token latency p50/p99, and the load average after each row.

Each server runs in a process of its own (the clients' threads would otherwise share its GIL), one at a time.
`transformers serve` needs `accelerate` besides transformers' own serving packages.

    OMP_NUM_THREADS=1 flock -x /tmp/cleangpt-bench.lock python benchmarks/bench_serve.py
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import orjson
import torch

from cleangpt_core.model import get_model, save_model
from cleangpt_core.tokenizers import CharacterTokenizer, create_tokenizer

GPT2_FILES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "gpt2"
CLIENTS = (1, 4, 8, 16)
NEW_TOKENS = 64
PORT = 8917


def make_models(folder: Path) -> dict[str, tuple[Path, Path, str]]:
    """{label: (cleanGPT checkpoint, its transformers export, a prompt)} of the two benchmark models."""
    char = CharacterTokenizer(vocab=list("abcdefghijklmnopqrstuvwxyz 0123456789.,\n"))
    gpt2 = create_tokenizer("gpt2", pretrained_model_name_or_path=str(GPT2_FILES))
    models = {}
    for label, tokenizer, width, prompt in (
        ("char, Vanilla 4 x 128", char, 128, "abc "),
        ("GPT-2 vocabulary, Vanilla 4 x 256", gpt2, 256, "The quick brown fox "),
    ):
        torch.manual_seed(0)
        model = get_model("Vanilla", vocab_size=tokenizer.vocab_size, n_layer=4, n_head=4, n_embd=width, block_size=256)
        checkpoint = folder / label.split(",")[0].replace(" ", "-")
        save_model(model, checkpoint)
        tokenizer.save_pretrained(checkpoint / "tokenizer")
        exported = checkpoint.with_name(checkpoint.name + "-hf")
        subprocess.run([sys.executable, "-m", "cleangpt_core", "export", str(checkpoint), str(exported)], check=True)
        models[label] = (checkpoint, exported, prompt)
    return models


@contextmanager
def server(command: list[str]) -> Iterator[str]:
    """A server process on PORT while the block runs; yields its base URL once /v1/models answers."""
    url = f"http://127.0.0.1:{PORT}"
    environment = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(url + "/v1/models", timeout=2).is_success:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{command[:3]} did not start")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=60)


def stream(url: str, model: str, prompt: str, log: list[dict]) -> None:
    """One streaming completion; records when the request went out and when each piece of text came back."""
    # greedy: an untrained model samples its end-of-text token now and then, which would end a stream early
    body = {"model": model, "prompt": prompt, "max_tokens": NEW_TOKENS, "temperature": 0, "stream": True}
    started = time.perf_counter()
    arrivals = []
    with httpx.Client(timeout=600) as client, client.stream("POST", url + "/v1/completions", json=body) as response:
        for line in response.iter_lines():
            if line.startswith("data: {") and orjson.loads(line[6:])["choices"][0].get("text"):
                arrivals.append(time.perf_counter())
    log.append({"started": started, "arrivals": arrivals})


def run(url: str, model: str, prompt: str, clients: int) -> dict[str, float]:
    log: list[dict] = []
    threads = [threading.Thread(target=stream, args=(url, model, f"{prompt}{n}", log)) for n in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    pieces = sum(len(entry["arrivals"]) for entry in log)
    first = [entry["arrivals"][0] - entry["started"] for entry in log if entry["arrivals"]]
    gaps = sorted(b - a for entry in log for a, b in zip(entry["arrivals"], entry["arrivals"][1:], strict=False))
    return {
        "tokens/s": pieces / wall,
        "first token ms": 1e3 * statistics.median(first),
        "gap p50 ms": 1e3 * gaps[len(gaps) // 2],
        "gap p99 ms": 1e3 * gaps[min(len(gaps) - 1, int(0.99 * len(gaps)))],
    }


def main() -> None:
    print(f"{NEW_TOKENS} new tokens per streaming request, greedy; torch threads: {torch.get_num_threads()}")
    print("| model | server | clients | tokens/s | first token ms | gap p50 ms | gap p99 ms | load (1 min) |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for label, (checkpoint, exported, prompt) in make_models(Path(folder)).items():
            servers = {
                "cleangpt serve": ([sys.executable, "-m", "cleangpt_core", "serve", str(checkpoint)], checkpoint.name),
                "transformers serve": (["transformers", "serve", str(exported)], str(exported)),
                "transformers serve --continuous-batching": (
                    ["transformers", "serve", str(exported), "--continuous-batching"],
                    str(exported),
                ),
            }
            for name, (command, model) in servers.items():
                with server([*command, "--port", str(PORT)]) as url:
                    run(url, model, prompt, 1)  # warm-up
                    for clients in CLIENTS:
                        result = run(url, model, prompt, clients)
                        load = os.getloadavg()[0]
                        cells = " | ".join(f"{value:.1f}" for value in result.values())
                        print(f"| {label} | {name} | {clients} | {cells} | {load:.2f} |", flush=True)


if __name__ == "__main__":
    main()
