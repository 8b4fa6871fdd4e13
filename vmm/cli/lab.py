"""``pyvmm lab``: list the course, start a lab, check the student's work, see a solution."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from vmm.course import labs

_WORKDIR = click.Path(file_okay=False, path_type=Path)


@click.group()
def lab() -> None:
    """The course in labs/: exercises to write, checks that grade them, solutions."""


@lab.command("list")
def list_labs() -> None:
    """Every lab: its title and concept, what it needs, and this student's status."""
    course = labs.all_labs()
    rows = [(f"{x.number:2}", x.title, ", ".join(x.needs) or "-", labs.status(x)) for x in course]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    click.echo(f"{'lab':>3}  {'title':<{widths[1]}}  {'needs':<{widths[2]}}  status")
    for (number, title, needs, status), x in zip(rows, course, strict=True):
        click.echo(f"{number:>3}  {title:<{widths[1]}}  {needs:<{widths[2]}}  {status}")
        click.echo(f"     {x.concept}")


@lab.command()
@click.argument("number", type=int)
@click.argument("workdir", type=_WORKDIR, required=False)
def start(number: int, workdir: Path | None) -> None:
    """Copy lab NUMBER's skeleton and README into WORKDIR (default ~/pyvmm-labs/NN-name)."""
    chosen = labs.find_lab(number)
    folder = labs.start(chosen, workdir)
    click.echo(f"lab {number}: {chosen.title}")
    click.echo(f"your files are in {folder}: read README.md there, then")
    click.echo(f"  pyvmm lab check {number} {folder}")


@lab.command()
@click.argument("number", type=int)
@click.argument("workdir", type=_WORKDIR, required=False)
def check(number: int, workdir: Path | None) -> None:
    """Run lab NUMBER's checks on the code in WORKDIR; exit 0 only when all pass."""
    chosen = labs.find_lab(number)
    folder = labs.workdir_of(chosen, workdir)
    results = labs.check(chosen, folder)
    for r in results:
        click.echo(f"{'PASS' if r.passed else 'FAIL'}  {r.check.name}")
        if r.detail:
            click.echo(f"      {r.detail}")
        if not r.passed:
            click.echo(f"      hint: {r.hint}")
    passed = sum(r.passed for r in results)
    click.echo(f"lab {number}: {passed} of {len(results)} checks pass")
    record = labs.load_record(chosen)
    earned = [f.workdir for f in record.folders if f.passed] if record else []
    if passed < len(results) and earned:
        click.echo(f"lab {number} stays passed: every check passed in {', '.join(earned)}")
    sys.exit(0 if passed == len(results) else 1)


@lab.command()
@click.argument("number", type=int)
@click.option("--copy", "copy_to", type=_WORKDIR, help="Write the files into this folder.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def solution(number: int, copy_to: Path | None, yes: bool) -> None:
    """Show (or copy) lab NUMBER's reference solution, after a confirmation."""
    chosen = labs.find_lab(number)
    if not yes:
        click.confirm(f"See the reference solution of lab {number} before solving it?", abort=True)
    files = labs.lab_files(chosen, solution=True)
    if copy_to:
        copy_to.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (copy_to / name).write_text(text)
        click.echo(f"written to {copy_to}: {', '.join(files)}")
        return
    for name, text in files.items():
        click.echo(f"==> {name} <==\n{text}")
