"""The README stays true to the code: the schema table and the CI test command."""

from __future__ import annotations

from pathlib import Path

from amebo_logging import schema

ROOT = Path(__file__).resolve().parent.parent


def test_readme_schema_table_is_the_schema():
    assert schema.markdown_table() in (ROOT / "README.md").read_text()


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python -m pytest -q" in readme
    assert ci.strip().splitlines()[-1] == "python -m pytest -q"
