"""``polyformer check DIR...``: verify model, checkpoint and run directories file by file.

A shipped name (``speech_spoken``) is checked in place. Each file gets one line: ``ok`` with how it
was checked (``checksum``: size and SHA-256 recorded when a checkpoint was written; ``structure``:
a weights file's header against its size, a torch file's zip checksums, JSON that parses), or
``DAMAGED`` with what is wrong. The exit code is 1 when anything is damaged.
"""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["check"]


@click.command()
@click.argument("directories", nargs=-1, required=True)
@click.option("--fast", is_flag=True, help="Compare recorded sizes and check structure; skip the SHA-256 hashes.")
@click.option("--quiet", is_flag=True, help="Print only damaged files.")
def check(directories: tuple[str, ...], fast: bool, quiet: bool) -> None:
    """Verify each file of model, checkpoint or run DIRECTORIES (or shipped checkpoint names)."""
    from polyformer.apps.pipelines import SHIPPED_CHECKPOINTS
    from polyformer.core.weights import verify_directory

    damaged = 0
    for name in directories:
        directory = Path(SHIPPED_CHECKPOINTS.get(name, name))
        if not directory.is_dir():
            raise click.ClickException(f"{name}: not a directory (give a model, checkpoint or run directory)")
        reports = verify_directory(directory, hashes=not fast)
        if not reports:
            raise click.ClickException(f"{directory}: no files to check")
        for report in reports:
            if not report.ok:
                damaged += 1
                click.echo(f"DAMAGED  {report.path}: {report.problem}")
            elif not quiet:
                click.echo(f"ok       {report.path} ({report.how})")
    checked = "directory" if len(directories) == 1 else "directories"
    if damaged:
        raise click.ClickException(f"{damaged} damaged file(s) in the {checked} checked")
    click.echo(f"all files intact in the {checked} checked")
