"""Every command with --json prints JSON on stdout and nothing else there: a script can parse it whole. Progress,
notes and third-party logs (TRL's per-step dicts, tqdm bars) go to stderr or nowhere. Train and `mix --auto` are
included: they are the commands whose stdout used to start with TRL's dicts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from prefgen.cli import cli
from prefgen.records import Judgement
from prefgen.storage.db import Store
from prefgen.storage.shards import write_shard
from tests.loopback_server import Behaviour

pytestmark = pytest.mark.slow  # trains reward models (MiniLM head, a few seconds each)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def longer(first: str, second: str) -> str:
    return "A" if len(first) > len(second) else "B"


def run(*args, stderr: list[str] | None = None) -> dict | list:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    if stderr is not None:
        stderr.append(result.stderr)
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"`prefgen {args[0]} --json` printed more than JSON on stdout:\n{result.stdout[:2000]}")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, loopback_server):
    loopback_server.reset()
    loopback_server.behaviour = Behaviour(truth=longer, confidence=0.97)
    tmp = tmp_path_factory.mktemp("json")
    db = tmp / "s.duckdb"
    label = run("label", "-c", EXAMPLES / "constitution.yaml", "-p", EXAMPLES / "pairs.jsonl", "--db", db,
                "--judge", "openai:gpt-4o-mini", "--api-base", loopback_server.openai_base, "--api-key", "k",
                "--json")
    return tmp, db, label


def test_every_command_prints_only_json_on_stdout(workspace, monkeypatch):
    tmp, db, label = workspace
    monkeypatch.chdir(tmp)
    assert label["kept_pairs"] > 0 and label["exit_code"] == 0
    assert run("import-human", EXAMPLES / "human.jsonl", "--format", "pairwise", "--db", db, "--json")["pairs"] == 30
    assert run("split", "--db", db, "--heldout", "0.3", "--seed", "0", "--json")["heldout"] == 0.3
    assert {"jobs", "calibration", "notes"} <= set(run("agreement", "--db", db, "--json"))
    assert set(run("stats", "--db", db, "--json")) >= {"overview", "jobs"}
    assert run("sql", "SELECT count(*) AS n FROM pairs", "--db", db, "--json") == [{"n": 80}]
    hashes = run("sql", "SELECT request_hash FROM judgements LIMIT 1", "--db", db, "--json")
    assert run("show", hashes[0]["request_hash"], "--db", db, "--json")["verified"] is True
    mixed = run("mix", "--db", db, "--name", "plain", "--json")
    assert mixed["human"] > 0 and mixed["ai"] > 0
    progress: list[str] = []
    auto = run("mix", "--db", db, "--name", "auto", "--auto", "--folds", "2", "--max-length", "64", "--json",
               stderr=progress)
    assert auto["mix"]["name"] == "auto" and auto["chosen"]
    stages = [line for line in progress[0].splitlines() if line.startswith("mix --auto: candidate ")]
    assert stages and stages[0].startswith("mix --auto: candidate 1/") and "2 folds of" in stages[0]  # a line each
    assert not (tmp / "reward-model").exists()  # its candidates trained in scratch folders, not in the cwd
    assert run("export", "--db", db, "--mix", "plain", "--format", "jsonl", "--out", tmp / "m.jsonl",
               "--json")["rows"] == mixed["rows"]
    trained = run("train", "--db", db, "--mix", "plain", "--out", tmp / "rm", "--max-length", "64", "--json")
    assert trained["n_train"] == mixed["rows"]
    assert run("eval", "--model", tmp / "rm", "--db", db, "--json")["n_pairs"] > 0
    responses = tmp / "responses.jsonl"
    responses.write_text(json.dumps({"prompt": "q?", "responses": ["a short one", "a longer answer"]}) + "\n")
    assert run("score", "--model", tmp / "rm", "--responses", responses, "--json")["responses"] == 2
    assert run("route", "--db", db, "--budget", "4", "--format", "label-studio", "--out", tmp / "batch.json",
               "--json")["candidates"] > 0
    assert run("report", "--db", db, "--out", tmp / "report.html", "--json")["plots"] > 0


def test_ingest_prints_only_json_on_stdout(workspace, tmp_path):
    tmp, db, _ = workspace
    copy = tmp_path / "s.duckdb"
    shutil.copy(db, copy)
    with Store(copy, read_only=True) as store:
        row = store.dicts("SELECT * FROM judgements LIMIT 1")[0]
    names = Judgement.__dataclass_fields__
    write_shard(tmp_path / "shards", "k", [Judgement(**{k: v for k, v in row.items() if k in names})])
    assert run("ingest", tmp_path / "shards", "--db", copy, "--json")["rows"] == 1
