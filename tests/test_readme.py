"""The README stays true: its options table is the registry's, and CI runs its test command."""
from __future__ import annotations

import pathlib
import re

from speedysvc.supervisor.options import markdown_table

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_readme_options_table_is_generated_from_the_registry():
    readme = (ROOT / "README.md").read_text()
    table = re.search(r"<!-- options-table -->\n(.*?)<!-- /options-table -->", readme, re.S).group(1)
    assert table.strip() == markdown_table().strip(), \
        "README options table is stale: paste the output of python -m speedysvc.supervisor.options"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    command = "apt-get update && apt-get install -y chromium && pip install -e '.[test]' && python -m pytest"
    assert f"\n{command}\n" in readme
    assert "python -m pytest" in ci and "grep -m1" in ci


def test_readme_run_command_names_example_ini():
    readme = (ROOT / "README.md").read_text()
    assert "pip install -e . && python -m speedysvc example.ini" in readme
    assert (ROOT / "example.ini").exists()
