"""`import prefgen` is the Python API: one call per command and the configs, loaded on first use, and the whole
flow from labelling to evaluation runs through it on a small store."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import prefgen
from tests.loopback_server import Behaviour
from tests.test_label_pipeline import CONSTITUTION, truth, write_pairs
from tests.test_read_while_written import write_human_labels

REPO = Path(__file__).resolve().parents[1]


def test_import_prefgen_loads_none_of_the_libraries_its_calls_need():
    code = ("import sys, prefgen; print(sorted(m for m in ('pydantic', 'click', 'duckdb', 'numpy', 'torch', "
            "'transformers', 'prefgen.api', 'prefgen.pipelines') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


def test_every_name_of_the_facade_is_a_command_call_or_a_config():
    from prefgen import api
    from prefgen.cli import cli
    from prefgen.pipelines import configs

    assert set(prefgen.__all__) - {"__version__"} == set(prefgen._LAZY)
    for name in prefgen.__all__[1:]:
        assert getattr(prefgen, name) is not None, name
    calls = {name.replace("_", "-") for name in api.__all__ if callable(getattr(api, name)) and name[0].islower()}
    assert calls == (set(cli.commands) - {"sql", "show", "eval"}) | {"evaluate"}  # `prefgen eval` is evaluate()
    assert prefgen.MixConfig is configs.MixConfig and prefgen.TrainConfig().method == "head"
    assert "evaluate" in dir(prefgen) and "LabelConfig" in dir(prefgen)


def test_prefgen_train_is_the_call_and_still_the_package():
    import prefgen.train.config

    assert callable(prefgen.train) and prefgen.train.config.TrainConfig is prefgen.TrainConfig
    with pytest.raises(TypeError):
        prefgen.train()  # the call's signature: db and mix are required


def test_a_config_and_its_fields_as_keywords_are_not_both_taken(tmp_path):
    with pytest.raises(TypeError, match="not both"):
        prefgen.split(tmp_path / "s.duckdb", prefgen.SplitConfig(heldout=0.3), seed=2)


def test_the_pairs_file_may_be_a_path_as_every_other_file_of_a_call_may(tmp_path):
    # The README's snippet builds its file names with pathlib; `pairs` took only a str and refused a Path.
    as_path = prefgen.LabelConfig(constitution=tmp_path / "c.yaml", pairs=tmp_path / "pairs.jsonl")
    assert as_path.pairs == str(tmp_path / "pairs.jsonl")
    assert as_path == prefgen.LabelConfig(constitution=tmp_path / "c.yaml", pairs=str(tmp_path / "pairs.jsonl"))


@pytest.mark.slow
def test_label_import_split_mix_train_and_evaluate_through_the_facade(tmp_path, loopback):
    loopback.behaviour = Behaviour(truth=truth)
    (tmp_path / "c.yaml").write_text(CONSTITUTION, encoding="utf-8")
    pairs, db = write_pairs(tmp_path / "pairs.jsonl", 40), tmp_path / "s.duckdb"
    summary = prefgen.label(constitution=tmp_path / "c.yaml", pairs=pairs, db=db, judge="openai:gpt-4o-mini",
                            api_base=loopback.openai_base, api_key="k", progress=False)
    assert summary.status == "finished" and summary.kept_pairs > 0

    imported = prefgen.import_human(db, write_human_labels(pairs, tmp_path / "human.jsonl", 30), fmt="pairwise")
    assert imported.pairs == 30
    assert prefgen.split(db, heldout=0.3, seed=0).heldout == 0.3
    mixed = prefgen.mix(db, prefgen.MixConfig(name="m1", human_ratio=None))
    assert mixed.human > 0 and mixed.ai > 0
    assert prefgen.stats(db)["jobs"][0]["kept_pairs"] == summary.kept_pairs

    outcome = prefgen.train(db, "m1", out_dir=tmp_path / "rm", max_length=48, max_steps=5)
    assert outcome.n_train == mixed.rows and (tmp_path / "rm" / "README.md").is_file()
    report = prefgen.evaluate(tmp_path / "rm", db=db, progress=False, out=tmp_path / "eval")
    assert report.n_pairs > 0 and 0.0 <= report.metrics["accuracy"] <= 1.0
    assert json.loads((tmp_path / "eval" / "eval.json").read_text())["accuracy"] == report.metrics["accuracy"]
    shown = prefgen.agreement(db)
    assert shown.report.jobs and shown.calibrations
