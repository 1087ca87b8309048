"""``cleangpt known-answers``: run the published findings' comparisons and say whether the tool reproduces each."""

from __future__ import annotations

import shlex
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from cleangpt_core.experiments.known_answers import KNOWN_FOLDER

if TYPE_CHECKING:
    from cleangpt_core.experiments.known_answers import Finding, Row

RECORD_FILE = "known_answer.json"  # in a finding's comparison folder: the finding's judgement and total wall time
TABLE_FILE = "known_answers.md"


@click.command("known-answers")
@click.argument("names", nargs=-1, metavar="[NAME|FILE]...")
@click.option(
    "--folder",
    type=click.Path(file_okay=False, path_type=Path),
    default=KNOWN_FOLDER,
    show_default=True,
    help="Where the findings' comparison files are (a NAME is a file's stem there).",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("runs/known"),
    show_default=True,
    help="Folder for each finding's comparison (OUT/NAME) and the table.",
)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a field in every run.")
@click.option("--list", "list_only", is_flag=True, help="List the findings and their commands; train nothing.")
def known_answers(
    names: tuple[str, ...], folder: Path, out_dir: Path, overrides: tuple[str, ...], list_only: bool
) -> None:
    """Run every finding in --folder (or the NAMEs given: a file's stem there, or a comparison file) with
    `cleangpt compare`, judge each report against the published answer, and print the table: finding, paper,
    command, the tool's verdict with its interval, agrees / disagrees / undecided, and wall time.

    Each finding is one comparison file with a known_answer section (docs/known-answers.md says how to write one
    for your own part). Started again, a finding keeps its finished runs and is judged again in seconds.
    """
    from cleangpt_core.experiments.known_answers import find_findings

    findings = find_findings(folder, names)
    extra = "".join(f" --set {shlex.quote(override)}" for override in overrides)
    if list_only:
        for finding in findings:
            click.echo(f"{finding.name}: {finding.answer.finding} ({finding.answer.paper})")
            click.echo(f"  {finding.command(out_dir / finding.name)}{extra}")
        return
    from cleangpt_core.checkpoints.atomic_write import write_text_atomic
    from cleangpt_core.experiments.known_answers import table

    rows = [_run(finding, out_dir, overrides, extra) for finding in findings]
    text = table(rows)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / TABLE_FILE, "# Known answers\n\n" + text + "\n")
    click.echo("\n" + text + f"\n\ntable: {out_dir / TABLE_FILE}")
    failed = [row.finding.name for row in rows if row.judgement.outcome == "not run"]
    if failed:
        raise click.ClickException(f"{len(failed)} finding(s) did not run: {', '.join(failed)} (the reasons are above)")


def _run(finding: Finding, out_dir: Path, overrides: tuple[str, ...], extra: str) -> Row:
    """Run one finding's comparison (continuing a started one), judge its report and record both."""
    import json

    from cleangpt_core.checkpoints.atomic_write import write_text_atomic
    from cleangpt_core.checkpoints.json_files import read_json
    from cleangpt_core.cli.compare import compare
    from cleangpt_core.errors import CleanGPTError, ConfigError
    from cleangpt_core.experiments.known_answers import Judgement, Row, judge
    from cleangpt_core.experiments.report import REPORT_JSON

    target = out_dir / finding.name
    record = target / RECORD_FILE
    advice = f"delete {target} to run the finding afresh"
    earlier = read_json(record, ConfigError, advice).get("wall_s", 0.0) if record.is_file() else 0.0
    click.echo(f"== {finding.name}: {finding.answer.finding}")
    arguments = ["--comparison", str(finding.path), "--out", str(target)]
    arguments += [part for override in overrides for part in ("--set", override)]
    started = time.monotonic()
    try:  # one finding that cannot run (its tokenizer offline, a bad override) leaves the others to run
        compare.main(arguments, prog_name="cleangpt compare", standalone_mode=False)
        judgement = judge(finding, read_json(target / REPORT_JSON, ConfigError, advice))
    except (CleanGPTError, click.ClickException) as error:
        reason = " ".join((error.message if isinstance(error, click.ClickException) else str(error)).split())
        click.echo(f"Error: {finding.name}: {reason}", err=True)
        judgement = Judgement(f"did not run: {reason}", "not run")
    wall_s = earlier + time.monotonic() - started
    command = finding.command(target) + extra
    target.mkdir(parents=True, exist_ok=True)
    write_text_atomic(record, json.dumps({"command": command, "wall_s": wall_s, **vars(judgement)}, indent=2) + "\n")
    return Row(finding, command, judgement, wall_s)
