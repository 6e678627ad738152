"""`prefgen report`: one self-contained page about a store, checked in a real headless Chromium."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from prefgen.cli import cli
from prefgen.pipelines.humans.calibration import calibrate
from prefgen.pipelines.configs import MixConfig
from prefgen.pipelines.humans.imports import import_human
from prefgen.pipelines.labelling import LabelConfig, run_label
from prefgen.pipelines.mixing.mix import build_mix
from prefgen.pipelines.reporting.page import NO_DATA, SECTIONS, fmt, write_report
from prefgen.pipelines.humans.split import split_human
from prefgen.storage.db import Store
from prefgen.storage.mixes import save_mix_trials
from prefgen.storage.training import finish_rm_run, save_rm_eval, start_rm_run
from tests import chromium
from tests.loopback_server import Behaviour
from tests.test_label_pipeline import CONSTITUTION, truth, write_pairs
from tests.test_read_while_written import write_human_labels

HOSTILE = "<script>alert(1)</script> $\\frac$"


@pytest.fixture(scope="module")
def full_store(tmp_path_factory, loopback_server):
    """A store with every section filled: a label run, human labels split and calibrated, a plain mix and a
    `mix --auto` decision with its trials, and a reward model with one evaluation."""
    tmp = tmp_path_factory.mktemp("report")
    constitution = tmp / "c.yaml"
    constitution.write_text(CONSTITUTION.replace("id: safety", f"id: '{HOSTILE}'"), encoding="utf-8")
    pairs, db = write_pairs(tmp / "pairs.jsonl", 40), tmp / "s.duckdb"
    loopback_server.reset(Behaviour(truth=truth, first_bias=0.3, confidence=0.8, confidence_spread=0.19))
    run_label(LabelConfig(constitution=constitution, pairs=str(pairs), db=db, judge="openai:gpt-4o-mini",
                          api_base=loopback_server.openai_base, api_key="k", progress=False, concurrency=8,
                          price_in=0.15, price_out=0.6))
    with Store(db) as store:
        import_human(store, write_human_labels(pairs, tmp / "human.jsonl", 40), fmt="pairwise", source="team-a")
        split_human(store, heldout=0.3, seed=0)
        calibrate(store)
        build_mix(store, MixConfig(name="plain", human_ratio=None))
        evidence = {"search_id": "s1", "chosen": "human_only", "reason": "no mix with AI rows beats human-only",
                    "folds": 2, "n_val": 20, "train": {"curriculum": None},
                    "candidates": [{"name": "human_only", "accuracy": 0.6, "delta": 0.0, "low": 0.0, "high": 0.0,
                                    "n_ai": 0, "per_fold": [0.55, 0.65]},
                                   {"name": "ai_hard", "accuracy": 0.58, "delta": -0.02, "low": -0.08,
                                    "high": 0.04, "n_ai": 30, "per_fold": [0.5, 0.66]}]}
        build_mix(store, MixConfig(name="auto", human_ratio=1.0), auto=evidence)
        save_mix_trials(store, [{"search_id": "s1", "mix_name": "auto", "candidate": c["name"], "fold": f,
                                 "n_train": 20, "n_ai": c["n_ai"], "n_val": 10, "accuracy": acc,
                                 "settings": {}} for c in evidence["candidates"] for f, acc in enumerate(c["per_fold"])])
        start_rm_run(store, run_id="rm-1", mix_name="plain", mix_hash="h", base_model="minilm", config={},
                     n_members=1, checkpoint_path=str(tmp / "rm"))
        finish_rm_run(store, "rm-1", status="finished", n_train=28, device="cpu", duration_s=12.5,
                      initial_loss=0.69, final_loss=0.48)
        save_rm_eval(store, eval_id="ev-1", run_id="rm-1", model_path=str(tmp / "rm"), split="heldout", n=12,
                     metrics=[("accuracy", 0.75), ("accuracy_ci95.lo", 0.5), ("accuracy_ci95.hi", 0.92),
                              ("calibration.ece", 0.08), ("mean_margin", 0.0003)])
    return db


def test_every_section_of_a_full_store_has_data_and_its_plots(full_store, tmp_path):
    page = write_report(full_store, tmp_path / "page.html")
    text = page.path.read_text(encoding="utf-8")
    assert page.empty == []
    assert page.sections == [title for _, title, _, _ in SECTIONS]
    assert page.plots == 8  # calls/s, bias, consistency, drops, confidence, calibration, auto, rm agreement
    for needle in ("team-a", "human_only", "no mix with AI rows beats human-only", "rm-1", "ev-1",
                   "calls_per_s", "first_slot_share", "0.0003"):
        assert needle in text, needle


def test_store_text_is_escaped_and_the_page_fetches_and_runs_nothing(full_store, tmp_path):
    text = write_report(full_store, tmp_path / "page.html").path.read_text(encoding="utf-8")
    assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert re.findall(r"""(?:src|href)=["'](?!data:image/png;base64,|#)""", text) == []
    assert "default-src 'none'" in text


def test_a_fresh_store_says_no_data_yet_in_every_section(tmp_path):
    Store(tmp_path / "new.duckdb").close()
    page = write_report(tmp_path / "new.duckdb", tmp_path / "page.html")
    assert page.plots == 0 and page.empty == page.sections
    assert page.path.read_text(encoding="utf-8").count(NO_DATA) == len(SECTIONS)


def test_report_command_writes_the_page_and_says_what_it_holds(full_store, tmp_path):
    result = CliRunner().invoke(cli, ["report", "--db", str(full_store), "--out", str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.output
    assert "8 sections" in result.output and "plots" in result.output and (tmp_path / "r.html").exists()


def test_small_values_keep_their_significant_digits():
    assert fmt(0.0003) == "0.0003" and fmt(0.123456) == "0.1235" and fmt(None) == "-" and fmt(12345678.0) == "1.235e+07"


def test_page_renders_in_headless_chromium_with_every_plot_decoded_and_no_console_error(full_store, tmp_path):
    page = write_report(full_store, tmp_path / "page.html")
    rendered = chromium.render(page.path, "report.png")
    assert rendered.console_errors == []
    assert len(rendered.images) == page.plots
    broken = [i["alt"] for i in rendered.images if not (i["complete"] and i["naturalWidth"] > 0)]
    assert broken == []
    assert rendered.title.startswith("prefgen report")
    assert rendered.screenshot.stat().st_size > 10_000


def test_a_store_from_before_a_table_existed_says_so_instead_of_failing(full_store):
    # What `collect` records for a table an older store lacks (its _migrations do not list the migration that
    # makes it). A table dropped from a store whose migrations made it is another matter: the store was
    # changed outside prefgen, and opening it is refused (tests/test_hostile_stores.py).
    from prefgen.pipelines.reporting.facts import MISSING as _MISSING
    from prefgen.pipelines.reporting.page import build_sections, collect

    with Store(full_store, read_only=True) as store:
        data = collect(store)
    data["mix_trials"] = _MISSING
    sections = {section.title: section.body for section in build_sections(data)}
    assert "not in this store" in sections["Training mixes"] and "Reward models and evaluations" in sections
