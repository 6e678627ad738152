"""Every command's --help ends in examples a new user can copy, and --db can come from $PREFGEN_DB."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from prefgen.cli import cli
from prefgen.cli_examples import EXAMPLES

ROOT = Path(__file__).resolve().parents[1]


def _options(command: click.Command) -> set[str]:
    return {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}


def test_every_command_has_examples_in_its_help():
    for name in cli.list_commands(click.Context(cli)):
        out = CliRunner().invoke(cli, [name, "--help"], terminal_width=100).output
        assert "Examples:" in out, f"`prefgen {name} --help` shows no example"
        assert EXAMPLES[name][0] in out  # unwrapped, so it can be copied whole


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_every_example_names_its_command_and_only_options_it_takes(name):
    command = cli.get_command(click.Context(cli), name)
    assert command is not None, f"examples for a command that does not exist: {name}"
    for example in EXAMPLES[name]:
        words = shlex.split(example)
        assert words[:2] == ["prefgen", name], example
        unknown = [w for w in words[2:] if w.startswith("-") and w.split("=")[0] not in _options(command)]
        assert not unknown, f"{example!r} uses {unknown}, which `prefgen {name}` does not take"


def test_db_comes_from_prefgen_db_when_not_given(tmp_path):
    store = tmp_path / "from-env.duckdb"
    # This checkout's prefgen, whatever the working directory (the command runs in tmp_path).
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PREFGEN_DB": str(store), "PYTHONPATH": path}
    done = subprocess.run([sys.executable, "-m", "prefgen", "import-human", str(ROOT / "examples" / "human.jsonl"),
                           "--format", "pairwise", "--json"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert store.exists() and not (tmp_path / "prefgen.duckdb").exists()
    given = tmp_path / "given.duckdb"  # --db still wins over the variable
    done = subprocess.run([sys.executable, "-m", "prefgen", "split", "--heldout", "0.3", "--db", str(given), "--json"],
                          cwd=tmp_path, env=env, capture_output=True, text=True)
    assert given.exists()  # the command opened the store it was given (it has no labels to split: refused there)
