"""``cleangpt kernels``: the kernel choices cached for this host (and others), measured afresh or cleared."""

from __future__ import annotations

import os

import click


@click.command("kernels")
@click.option("--time", "measure", is_flag=True, help="Measure the kernels of a model's shapes afresh, then show.")
@click.option("--clear", is_flag=True, help="Delete the cache: every shape is measured again when next used.")
@click.option("--vocab-size", type=click.IntRange(min=2), default=65, show_default=True, help="--time: the model's.")
@click.option("--n-layer", type=click.IntRange(min=1), default=4, show_default=True, help="--time: the model's.")
@click.option("--n-head", type=click.IntRange(min=1), default=4, show_default=True, help="--time: the model's.")
@click.option("--n-embd", type=click.IntRange(min=1), default=128, show_default=True, help="--time: the model's.")
@click.option("--block-size", type=click.IntRange(min=2), default=64, show_default=True, help="--time: tokens per row.")
@click.option("--batch-size", type=click.IntRange(min=1), default=12, show_default=True, help="--time: rows.")
@click.option("--bf16", is_flag=True, help="--time: under bf16 autocast, as mixed_precision=bf16 trains.")
def kernels(
    measure: bool,
    clear: bool,
    vocab_size: int,
    n_layer: int,
    n_head: int,
    n_embd: int,
    block_size: int,
    batch_size: int,
    bf16: bool,
) -> None:
    """Show the kernel each operation uses at each shape on this host, as measured and cached (the cache file,
    this host's key, each shape's choice and the best time of each candidate, in ms).

    With --time, this host's cached choices are dropped, then a Vanilla model of the given shape takes a
    training step and an evaluation forward, and every shape it meets is measured again (the default shape is
    the character recipe's); the others are measured when next used. With --clear, the cache
    is deleted. $CLEANGPT_KERNELS fixes kernels instead of measuring them; --time needs it unset or 'auto'.
    """
    from cleangpt_core.kernels.cache import cache_path, clear_cache, read_cache
    from cleangpt_core.kernels.choices import KERNELS_ENV, parse_fixed
    from cleangpt_core.kernels.host import host_key

    path = cache_path()
    if clear:
        click.echo(f"deleted {path}" if clear_cache(path) else f"no kernel cache at {path}")
        if not measure:
            return
    if measure:
        if parse_fixed(os.environ.get(KERNELS_ENV, "")):
            raise click.UsageError(f"${KERNELS_ENV} fixes the kernels, so --time would measure nothing; unset it")
        if n_embd % n_head:
            raise click.BadParameter(f"--n-embd {n_embd} is not divisible by --n-head {n_head}", param_hint="--n-embd")
        measured, unsettled = _time_a_model(vocab_size, n_layer, n_head, n_embd, block_size, batch_size, bf16)
        click.echo(f"measured {measured} shape(s) on this host")
        if unsettled:
            click.echo(
                f"{len(unsettled)} shape(s) timed as noise (a busy machine): PyTorch's kernels are kept for them "
                "and nothing was cached: " + ", ".join(unsettled)
            )
    hosts = read_cache(path)
    click.echo(f"kernel cache: {path}" + ("" if hosts else " (empty)"))
    here = host_key()
    for host in sorted(hosts, key=lambda key: key != here):
        click.echo(f"\n{host}" + ("   <- this host" if host == here else ""))
        for shape, entry in sorted(hosts[host].items()):
            timings = ", ".join(f"{name} {ms:g}" for name, ms in entry["ms"].items())
            click.echo(f"  {shape:<52} {entry['kernel']:<16} ({timings})")


def _time_a_model(
    vocab_size: int, n_layer: int, n_head: int, n_embd: int, block_size: int, batch_size: int, bf16: bool
) -> tuple[int, list[str]]:
    """Measure every shape a training step and an evaluation forward meet; how many, and those left unsettled."""
    import contextlib

    import torch

    from cleangpt_core.kernels.cache import drop_host, read_cache
    from cleangpt_core.kernels.choices import choices_made, forget_choices
    from cleangpt_core.kernels.host import host_key
    from cleangpt_core.model import get_model

    drop_host(host_key())
    forget_choices()
    model = get_model(
        "Vanilla", vocab_size=vocab_size, n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=block_size
    )
    tokens = torch.randint(0, vocab_size, (batch_size, block_size), generator=torch.Generator().manual_seed(0))
    precision = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with precision:
        model(tokens, labels=tokens)["loss"].backward()
        with torch.no_grad():
            model(tokens, labels=tokens)["loss"].item()
    made = choices_made()
    cached = read_cache().get(host_key(), {})
    return len(made), [shape for shape in made if shape not in cached]
