"""The smaller hardening items, one behaviour each: CSV rows wider than the header, --skip-bad reporting,
non-text responses, .json arrays, CSV export of list columns, and repeated Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest
from click.testing import CliRunner

from prefgen.cli import cli
from prefgen.errors import InputError
from prefgen.pipelines.labelling.inputs import read_pairs
from tests.loopback_server import Behaviour
from tests.test_cli import labelled_db  # noqa: F401
from tests.test_label_pipeline import (  # noqa: F401
    CONSTITUTION, REPO, files, label_command, label_in_flight, query, truth, write_pairs)


def invoke_label(tmp_path, pairs_path, loopback, *extra: str):
    (tmp_path / "c.yaml").write_text(CONSTITUTION)
    return CliRunner().invoke(cli, ["label", "-c", str(tmp_path / "c.yaml"), "-p", str(pairs_path),
                                    "--db", str(tmp_path / "db.duckdb"), "--judge", "openai:gpt-4o-mini",
                                    "--api-base", loopback.openai_base, "--api-key", "k", "--no-progress", *extra])


def test_csv_row_with_more_fields_than_its_header_is_a_clean_error(tmp_path, loopback):
    path = tmp_path / "p.csv"
    path.write_text("prompt,response_a,response_b\nq,one,two\nq2,one, two, and three\n")
    result = invoke_label(tmp_path, path, loopback)
    assert result.exit_code == 2
    assert result.output == (f"error: {path}:3: 1 more field(s) than the header's 3 "
                             "(quote fields that contain commas, or fix the header)\n")
    assert not (tmp_path / "db.duckdb").exists()


def test_skip_bad_reports_every_dropped_row_with_its_reason(tmp_path, loopback):
    loopback.behaviour = Behaviour(truth=truth)
    path = write_pairs(tmp_path / "p.jsonl", 5)
    with path.open("a") as f:
        f.write('{"prompt": "q", "response_a": "x"}\n')
        f.write('{"prompt": "q", "response_a": "x", "response_b": 7}\n')
        f.write(json.dumps({"prompt": "q", "response_a": "same", "response_b": "same"}) + "\n")
    result = invoke_label(tmp_path, path, loopback, "--skip-bad")
    assert result.exit_code == 0, result.output
    assert "Skipped 3 bad row(s) (--skip-bad):" in result.output
    for line in (6, 7, 8):
        assert f"p.jsonl:{line}" in result.output


def test_an_integer_response_is_called_not_text_rather_than_empty(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "q", "response_a": "fine", "response_b": 42}\n')
    with pytest.raises(InputError) as caught:
        read_pairs(path)
    assert str(caught.value) == f"{path}:1 response_b: must be text, got int '42' (write the response as a string; or skip such rows with --skip-bad)"


def test_a_json_array_is_read_as_rows_not_as_jsonl(tmp_path):
    rows = [{"prompt": f"q{i}", "response_a": f"a{i}", "response_b": f"b{i}"} for i in range(3)]
    array = tmp_path / "p.json"
    array.write_text(json.dumps(rows, indent=2))
    assert [p.prompt for p in read_pairs(array).pairs] == ["q0", "q1", "q2"]
    lines = tmp_path / "lines.json"  # JSON Lines under a .json name still reads
    lines.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert len(read_pairs(lines).pairs) == 3


def test_sql_csv_writes_list_and_struct_columns_as_json(labelled_db):
    result = CliRunner().invoke(cli, ["sql", "SELECT [1, 2] AS l, {'a': 'x'} AS s, 3 AS n",
                                      "--db", str(labelled_db), "--format", "csv"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1] == '"[1,2]","{""a"":""x""}",3'


def test_repeated_ctrl_c_ends_in_one_line_with_the_store_whole(files, loopback):
    constitution, pairs, db = files
    proc, command = label_in_flight(files, loopback)
    for _ in range(30):  # Ctrl-C held down: through the sending, the final writes and the summary
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGINT)
        time.sleep(0.01)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "Query interrupted" not in err, err
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert query(db, "SELECT count(*), count(DISTINCT (pair_id, principle_id, ordering)) FROM judgements") == \
        [(240, 240)]
    assert query(db, "SELECT count(*) FROM runs WHERE status = 'running'") == [(0,)]
