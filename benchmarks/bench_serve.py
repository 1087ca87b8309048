"""Load on `cleangpt serve`: 8 concurrent streaming clients against one server on this machine, beside one
client alone, with the same model; prints throughput, time to first token and the gap between tokens.

Requests take turns at the model one token at a time (`serving.engine.TurnTaking`), so eight streams share
the machine's throughput and each advances at about an eighth of the single stream's pace.

    flock /tmp/cleangpt-bench.lock python benchmarks/bench_serve.py
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
import orjson
import torch

from cleangpt_core.model import get_model, save_model
from cleangpt_core.serving import build_app
from cleangpt_core.serving.background import running_server
from cleangpt_core.tokenizers import CharacterTokenizer

SHAPE = {"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 128}  # a character-level model, as bench_train_step
CLIENTS = 8
NEW_TOKENS = 96


def stream(url: str, prompt: str, log: list[dict]) -> None:
    """One streaming completion; records when the request went out and when each piece came back."""
    # greedy: an untrained model samples its end-of-text token now and then, which would end a stream early
    body = {"model": "bench", "prompt": prompt, "max_tokens": NEW_TOKENS, "temperature": 0, "stream": True}
    started = time.perf_counter()
    arrivals = []
    with httpx.Client(timeout=600) as client, client.stream("POST", url + "/v1/completions", json=body) as response:
        for line in response.iter_lines():
            if line.startswith("data: {") and orjson.loads(line[6:])["choices"][0]["text"]:
                arrivals.append(time.perf_counter())
    log.append({"started": started, "arrivals": arrivals})


def run(url: str, clients: int) -> dict[str, float]:
    log: list[dict] = []
    threads = [threading.Thread(target=stream, args=(url, f"abc {n}", log)) for n in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    pieces = sum(len(entry["arrivals"]) for entry in log)
    first = [entry["arrivals"][0] - entry["started"] for entry in log]
    gaps = [b - a for entry in log for a, b in zip(entry["arrivals"], entry["arrivals"][1:], strict=False)]
    return {
        "tokens/s": pieces / wall,
        "first token ms": 1e3 * statistics.median(first),
        "max first token ms": 1e3 * max(first),
        "gap ms": 1e3 * statistics.median(gaps),
        "wall s": wall,
    }


def main() -> None:
    tokenizer = CharacterTokenizer(vocab=list("abcdefghijklmnopqrstuvwxyz 0123456789.,\n"))
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        run_dir = Path(folder) / "bench"
        save_model(get_model("Vanilla", vocab_size=tokenizer.vocab_size, **SHAPE), run_dir)
        tokenizer.save_pretrained(run_dir / "tokenizer")
        with running_server(build_app(run_dir)) as url:
            run(url, 1)  # warm-up
            results = {}
            for _ in range(2):  # alone and eight at once, twice, interleaved
                for clients in (1, CLIENTS):
                    results.setdefault(clients, []).append(run(url, clients))
    print(f"cleangpt serve, Vanilla 4 x 128 (char vocabulary), {NEW_TOKENS} new tokens per request, CPU")
    for clients, runs in results.items():
        medians = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        print(f"  {clients} client(s): " + ", ".join(f"{key} {value:.1f}" for key, value in medians.items()))
    with open("/proc/loadavg") as load:
        print(f"  load average: {load.read().strip()}")


if __name__ == "__main__":
    main()
