"""``python -m amebo_logging demo [--count N] [--interval S]``: write demo Amebo records."""

from __future__ import annotations

import click

from . import demo


@click.group()
def main() -> None:
    """amebo_logging utilities."""


@main.command("demo")
@click.option("--count", type=int, default=20, show_default=True, help="Rounds to log; 0 logs forever.")
@click.option("--interval", type=float, default=0.0, show_default=True, help="Seconds between rounds.")
@click.option("--seed", type=int, default=None, help="Seed for repeatable output.")
def demo_command(count: int, interval: float, seed: int | None) -> None:
    """Write realistic Amebo records (publish, deliver, access) with configure_logging()."""
    demo.run(count or None, interval, seed)


@main.command("schema")
def schema_command() -> None:
    """Print the record schema as a Markdown table."""
    from .schema import markdown_table

    click.echo(markdown_table())


if __name__ == "__main__":
    main()
