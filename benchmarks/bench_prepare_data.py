"""`cleangpt prepare-data` on a deterministic corpus of 100 MB and 1 GB, against single-process tiktoken.

The corpus is JSON Lines of documents recombined from Tiny Shakespeare lines by a seeded generator, so it
needs no download and is the same on every machine. For each size the run is interleaved:

1. single-process tiktoken (`GPT2Tokenizer.encode_corpus`: the GPT-2 tiktoken twin, built beforehand,
   encoding straight into a numpy array) over every document of the corpus, timing only the encode calls
   (reading and JSON parsing are left out, to the reference's advantage);
2. prepare-data (`prepare_data`, what ``cleangpt prepare-data --tokenizer gpt2 --num-proc N`` runs) in a
   process of its own: wall and CPU seconds (its own and its workers') from the start of streaming to the
   index written, with the tokenizer loaded beforehand as the reference's is; and the whole process's wall
   time; its memory sampled every 250 ms: the proportional set size (PSS, shared pages divided among the
   processes sharing them) summed over the main process and its workers, and the largest resident set of
   any one process;
3. the reference again, so a change of machine load shows as two different reference times.

Two ratios come out. Wall: the reference's time (mean of both passes) over prepare-data's. CPU:
prepare-data's CPU seconds over the reference's on the same text. On a machine shared with other work
(and with Linux's autogroup scheduling, which splits the CPU between sessions, not processes) the wall
ratio says as much about the neighbours as about the code; the CPU ratio hardly moves with load, and N
uncontended cores give at most N / (CPU ratio) of the reference's throughput.

Targets (issue 14): prepare at least 1.8x the reference's throughput (wall ratio), peak memory under 1 GB,
and the peak for 1 GB within 10% of the peak for 100 MB.

With ``--single-line-mb N`` it measures instead how memory depends on the shape of the lines (issue 25):
peak memory of prepare-data on N MB of JSON Lines as above, on N MB of one line of text with no space (Tiny
Shakespeare with its whitespace removed: once one work unit of N MB, ~50 bytes of memory per byte) and on
one JSON Lines record of N MB (Tiny Shakespeare repeated, its newlines escaped, as one "text" field: once
refused, now read around its strings and cut into pieces as a text file is). Target: every peak PSS under
the same bound, 1 GB. The files are written under --work (a temporary folder) and deleted after.

Usage: flock /tmp/bench.lock python benchmarks/bench_prepare_data.py [--sizes-mb 100 1000] [--num-proc 2]
[--work DIR] [--gpt2 FOLDER] [--single-line-mb 200]. Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from cleangpt_core.tokenizers import create_tokenizer
from cleangpt_core.utils import tinyshakespeare_text

ROOT = Path(__file__).resolve().parent.parent
GENERATOR_VERSION = 1


def make_corpus(path: Path, megabytes: int, seed: int = 1234) -> Path:
    """JSON Lines of documents of 20-400 random Tiny Shakespeare lines, until `megabytes` MB are written."""
    if path.is_file() and path.stat().st_size >= megabytes * 10**6:
        return path
    lines = np.array(tinyshakespeare_text().splitlines(), dtype=object)
    rng = np.random.default_rng(seed)
    written, target = 0, megabytes * 10**6
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as file:
        while written < target:
            chunk = []
            for _ in range(100):
                document = "\n".join(lines[rng.integers(0, len(lines), size=int(rng.integers(20, 400)))])
                chunk.append(json.dumps({"text": document}) + "\n")
            data = "".join(chunk)
            file.write(data)
            written += len(data.encode("utf-8"))
    tmp.replace(path)
    return path


def reference_pass(path: Path, tokenizer: object) -> tuple[float, float, int, int]:
    """Wall and CPU seconds spent in single-process tiktoken over every document, the tokens and documents."""
    seconds = cpu = 0.0
    tokens = documents = 0
    with path.open("rb") as file:
        for line in file:
            text = json.loads(line)["text"]
            start, start_cpu = time.perf_counter(), time.process_time()
            ids = tokenizer.encode_corpus(text)
            seconds += time.perf_counter() - start
            cpu += time.process_time() - start_cpu
            tokens += len(ids)
            documents += 1
    return seconds, cpu, tokens, documents


def _tree(pid: int) -> list[int]:
    pids, frontier = [], [pid]
    while frontier:
        current = frontier.pop()
        pids.append(current)
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        frontier.extend(int(child) for child in children)
    return pids


def _memory_kb(pid: int, field: str, file: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/{file}").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


PREPARE = """
import json, resource, sys, time
from cleangpt_core.tokenizers import create_tokenizer
from cleangpt_core.data.document_sources import DocumentSource
from cleangpt_core.data.shard_writer import prepare_data

corpus, out, gpt2, num_proc = sys.argv[1:]
tokenizer = create_tokenizer("gpt2", pretrained_model_name_or_path=gpt2)
tokenizer.encode_corpus("")  # builds the tiktoken twin, as for the reference

def cpu():
    return sum(t for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN) for t in resource.getrusage(who)[:2])

start_cpu, start = cpu(), time.perf_counter()
prepare_data(DocumentSource.from_argument(corpus), tokenizer, out, num_proc=int(num_proc), progress=False)
print(json.dumps({"seconds": time.perf_counter() - start, "cpu": cpu() - start_cpu}))
"""


def prepare_pass(corpus: Path, out: Path, gpt2: Path, num_proc: int) -> tuple[float, float, float, float, float]:
    """Prepare-data's wall and CPU seconds (workers included), its process's wall time, peak PSS and RSS (MB)."""
    command = [sys.executable, "-c", PREPARE, str(corpus), str(out), str(gpt2), str(num_proc)]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    peak_pss = peak_rss = 0
    while process.poll() is None:
        pids = _tree(process.pid)
        peak_pss = max(peak_pss, sum(_memory_kb(p, "Pss", "smaps_rollup") for p in pids))
        peak_rss = max(peak_rss, *(_memory_kb(p, "VmRSS", "status") for p in pids))
        time.sleep(0.25)  # sparse: reading smaps_rollup costs CPU that the prepare would miss
    wall = time.perf_counter() - start
    output = process.stdout.read() if process.stdout else ""
    if process.returncode != 0:
        raise SystemExit(f"prepare-data failed with exit status {process.returncode}")
    measured = json.loads(output)
    return measured["seconds"], measured["cpu"], wall, peak_pss / 1024, peak_rss / 1024


def single_line_files(work: Path, megabytes: int) -> dict[str, Path]:
    """N MB of normal JSON Lines, of one line of text without spaces, and of one JSON Lines record."""
    normal = make_corpus(work / f"normal-{megabytes}MB.jsonl", megabytes)
    spaceless = "".join(tinyshakespeare_text().split())
    repeats = megabytes * 10**6 // len(spaceless.encode("utf-8")) + 1
    text = work / f"spaceless-{megabytes}MB.txt"
    with text.open("w", encoding="utf-8") as file:
        for _ in range(repeats):
            file.write(spaceless)
    record = work / f"one-record-{megabytes}MB.jsonl"
    with record.open("w", encoding="utf-8") as file:
        file.write('{"id": 0, "text": "')
        play = json.dumps(tinyshakespeare_text())[1:-1]  # a JSON string's characters, "\\n" for each newline
        for _ in range(megabytes * 10**6 // len(play) + 1):
            file.write(play)
        file.write('", "source": "Tiny Shakespeare, repeated"}\n')
    return {"normal JSON Lines": normal, "one line of text, no space": text, "one JSON Lines record": record}


def single_line_main(args: argparse.Namespace) -> int:
    """Peak memory on normal lines against one giant line: all under one bound."""
    bound_mb = 1024
    print(f"prepare-data memory by line shape, {args.num_proc} processes; load average {os.getloadavg()}")
    work = Path(tempfile.mkdtemp(dir=args.work))
    ok = True
    try:
        for what, corpus in single_line_files(work, args.single_line_mb).items():
            _, _, wall, pss, rss = prepare_pass(corpus, work / "prepared", args.gpt2, args.num_proc)
            shutil.rmtree(work / "prepared", ignore_errors=True)
            ok &= pss < bound_mb
            print(
                f"{corpus.stat().st_size / 1e6:7.1f} MB, {what:27}: peak PSS {pss:7.1f} MB (largest RSS {rss:7.1f} MB) "
                f"in {wall:.1f} s [target < {bound_mb} MB: {'PASS' if pss < bound_mb else 'FAIL'}]"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"load average at the end {os.getloadavg()}")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mb", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--num-proc", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "cleangpt-bench-prepare")
    parser.add_argument("--gpt2", type=Path, default=ROOT / "tests" / "fixtures" / "gpt2")
    parser.add_argument("--single-line-mb", type=int, default=None, help="measure memory by line shape instead")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.single_line_mb:
        return single_line_main(args)
    tokenizer = create_tokenizer("gpt2", pretrained_model_name_or_path=str(args.gpt2))
    tokenizer.encode_corpus("")  # builds the tiktoken twin outside the timed encodes
    print(f"prepare-data with {args.num_proc} processes vs single-process tiktoken; load average {os.getloadavg()}")
    ok, peaks = True, []
    for megabytes in args.sizes_mb:
        corpus = make_corpus(args.work / f"shakespeare-v{GENERATOR_VERSION}-{megabytes}MB.jsonl", megabytes)
        size_mb = corpus.stat().st_size / 1e6
        out = args.work / f"prepared-{megabytes}MB"
        shutil.rmtree(out, ignore_errors=True)
        before, before_cpu, tokens, documents = reference_pass(corpus, tokenizer)
        seconds, cpu, wall, pss, rss = prepare_pass(corpus, out, args.gpt2, args.num_proc)
        after, after_cpu, _, _ = reference_pass(corpus, tokenizer)
        index = json.loads((out / "index.json").read_text())
        assert index["tokens"] == tokens + documents - 1, "prepare-data and the reference disagree on the ids"
        shutil.rmtree(out)
        reference = (before + after) / 2
        ratio = reference / seconds
        ok &= ratio >= 1.8 and pss < 1024
        peaks.append(pss)
        reference_cpu = (before_cpu + after_cpu) / 2
        print(
            f"{size_mb:7.1f} MB, {tokens:,} tokens: tiktoken 1 process {size_mb / before:5.1f} then "
            f"{size_mb / after:5.1f} MB/s | prepare-data {size_mb / seconds:5.1f} MB/s ({seconds:.1f} s; whole "
            f"process {wall:.1f} s) | wall ratio {ratio:4.2f}x [target >= 1.8x: {'PASS' if ratio >= 1.8 else 'FAIL'}]"
            f" | peak PSS {pss:6.1f} MB (largest RSS {rss:6.1f} MB) [target < 1 GB: {'PASS' if pss < 1024 else 'FAIL'}]"
        )
        print(
            f"          CPU: tiktoken {reference_cpu:.1f} s ({reference_cpu / reference:.0%} of its wall time), "
            f"prepare-data {cpu:.1f} s in all processes ({cpu / seconds:.0%} of one core over its wall time): "
            f"CPU ratio {cpu / reference_cpu:.3f}x, so at most {args.num_proc * reference_cpu / cpu:.2f}x the "
            f"reference's throughput on {args.num_proc} uncontended cores"
        )
    if len(peaks) > 1:
        spread = max(peaks) / min(peaks) - 1
        ok &= spread <= 0.10
        print(f"peak memory spread across sizes: {spread:.1%} [target <= 10%: {'PASS' if spread <= 0.10 else 'FAIL'}]")
    print(f"load average at the end {os.getloadavg()}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
