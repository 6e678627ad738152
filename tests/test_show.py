"""`prefgen show`: every judgement's request is rebuilt from the store, byte for byte what the judge received."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from prefgen.cli import cli
from prefgen.errors import PrefgenError
from prefgen.pipelines.labelling import LabelConfig, run_label
from prefgen.pipelines.reporting.show import show_judgement
from prefgen.storage.db import Store
from tests.loopback_server import Behaviour
from tests.test_label_pipeline import CONSTITUTION, truth, write_pairs

CUSTOM = CONSTITUTION + """\
judge_template: |
  ### Rule
  {principle}
  ### Conversation
  {prompt}
  ### Response A
  {first}
  ### Response B
  {second}
"""


def label(tmp_path, loopback, constitution_text: str, pairs, behaviour: Behaviour | None = None, **overrides):
    constitution = tmp_path / "c.yaml"
    constitution.write_text(constitution_text, encoding="utf-8")
    db = tmp_path / "s.duckdb"
    loopback.behaviour = behaviour or Behaviour(truth=truth)
    run_label(LabelConfig(constitution=constitution, pairs=str(pairs), db=db, judge="openai:gpt-4o-mini",
                          api_base=loopback.openai_base, api_key="k", progress=False, **overrides))
    return db


def hashes(db) -> list[str]:
    with Store(db, read_only=True) as store:
        return [row[0] for row in store.query("SELECT request_hash FROM judgements ORDER BY 1")[1]]


def wire_of_every_judgement(db) -> list[bytes]:
    with Store(db, read_only=True) as store:
        shown = [show_judgement(store, h) for h in hashes(db)]
    assert all(s.verified for s in shown)
    return sorted(s.wire_bytes() for s in shown)


def test_show_rebuilds_every_request_byte_for_byte_as_the_server_received_it(tmp_path, loopback):
    db = label(tmp_path, loopback, CONSTITUTION, write_pairs(tmp_path / "p.jsonl", 5))
    received = sorted(r.raw for r in loopback.requests)
    assert len(received) == 20
    assert wire_of_every_judgement(db) == received


def test_custom_template_verbalised_mode_and_chat_prompts_are_rebuilt_exactly(tmp_path, loopback):
    pairs = tmp_path / "chat.jsonl"
    with pairs.open("w", encoding="utf-8") as f:
        for i in range(3):
            prompt = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"question {i}?"}]
            f.write(json.dumps({"prompt": prompt, "response_a": f"answer with quality {i + 5}",
                                "response_b": f"### Response B\n</response> quality {i}"}) + "\n")
    # The fake judge reads the default template's tags to decide; under this one it always answers "A".
    db = label(tmp_path, loopback, CUSTOM, pairs, Behaviour(truth=None), mode="verbalised")
    assert wire_of_every_judgement(db) == sorted(r.raw for r in loopback.requests)


def test_show_command_prints_the_messages_and_the_wire_body_of_one_judgement(tmp_path, loopback):
    db = label(tmp_path, loopback, CONSTITUTION, write_pairs(tmp_path / "p.jsonl", 2))
    first = hashes(db)[0]
    wire = CliRunner().invoke(cli, ["show", first[:10], "--db", str(db), "--wire"])
    assert wire.exit_code == 0, wire.output
    sent = next(r.raw for r in loopback.requests if r.raw == wire.stdout_bytes.rstrip(b"\n"))
    assert wire.stdout_bytes == sent + b"\n"
    readable = CliRunner().invoke(cli, ["show", first[:10], "--db", str(db)])
    assert readable.exit_code == 0, readable.output
    body = json.loads(sent)
    for message in body["messages"]:
        assert f"--- {message['role']} ---\n{message['content']}\n" in readable.output
    assert "request hash verified" in readable.output and "--- answer (status ok" in readable.output


def test_a_job_from_before_the_template_record_is_rebuilt_from_its_version(tmp_path, loopback):
    db = label(tmp_path, loopback, CONSTITUTION, write_pairs(tmp_path / "p.jsonl", 2), mode="cot")
    with Store(db) as store:
        store.con.execute("UPDATE label_jobs SET template = NULL")
    assert wire_of_every_judgement(db) == sorted(r.raw for r in loopback.requests)


def test_a_changed_text_on_record_is_flagged_not_shown_as_sent(tmp_path, loopback):
    db = label(tmp_path, loopback, CONSTITUTION, write_pairs(tmp_path / "p.jsonl", 2))
    with Store(db) as store:
        store.con.execute("UPDATE principles SET text = 'Something else.'")
    result = CliRunner().invoke(cli, ["show", hashes(db)[0], "--db", str(db)])
    assert result.exit_code == 0 and "WARNING: the rebuilt request does not hash" in result.output


def test_an_unknown_or_too_short_judgement_id_is_one_clear_error(tmp_path, loopback):
    db = label(tmp_path, loopback, CONSTITUTION, write_pairs(tmp_path / "p.jsonl", 1))
    with Store(db, read_only=True) as store:
        with pytest.raises(PrefgenError, match="at least 6 characters"):
            show_judgement(store, "ab")
        with pytest.raises(PrefgenError, match="no judgement whose request_hash starts with 's1-ffffffffff'"):
            show_judgement(store, "ffffffffff")


def test_a_judgement_id_may_leave_out_its_hash_tag(tmp_path, loopback):
    """Tables and the README show the hex; `s1-` names the hash's form and is implied."""
    db = label(tmp_path, loopback, CONSTITUTION, write_pairs(tmp_path / "p.jsonl", 1))
    full = hashes(db)[0]
    with Store(db, read_only=True) as store:
        assert show_judgement(store, full.split("-", 1)[1][:8]).row["request_hash"] == full
        assert show_judgement(store, full[:12]).row["request_hash"] == full


def test_show_json_carries_the_row_the_request_and_the_check(tmp_path, loopback):
    db = label(tmp_path, loopback, CONSTITUTION, write_pairs(tmp_path / "p.jsonl", 1))
    first = hashes(db)[0]
    result = CliRunner().invoke(cli, ["show", first, "--db", str(db), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["request_hash"] == first and data["verified"] is True
    assert json.dumps(data["request"]).encode() in [json.dumps(json.loads(r.raw)).encode() for r in loopback.requests]
