"""Every knob in a config object: one default per option, options that cannot apply are refused, and the
training settings `mix --auto` validated with travel with the mix to `prefgen train`."""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner

from prefgen.cli import cli
from prefgen.cli_options import literal_defaults, option_from_field
from prefgen.pipelines.configs import AutoMixConfig, ImportConfig
from prefgen.storage.db import Store
from prefgen.train.config import TrainConfig

# -- one default per option -------------------------------------------------------------------------------


def test_no_option_of_any_command_has_a_default_that_no_config_field_gave():
    assert literal_defaults(cli) == []


def test_the_default_check_finds_a_default_written_on_the_option():
    @click.group()
    def group() -> None:
        pass

    @group.command()
    @click.option("--folds", default=3)
    @option_from_field(AutoMixConfig, "confidence", "--confidence", default=0.9)
    @option_from_field(AutoMixConfig, "folds", "--k")
    @click.option("--flag", is_flag=True)
    @click.option("--name", default=None)
    def search(**options) -> None:
        pass

    assert literal_defaults(group) == ["group search --folds: 3", "group search --confidence: 0.9"]


def test_batch_size_and_max_length_have_one_default_each(tmp_path):
    from prefgen.train.card import write_model_card
    from prefgen.train.common import SCORE_BATCH_SIZE

    for command in ("eval", "score"):
        batch = next(p for p in cli.commands[command].params if p.name == "batch_size")
        assert batch.default == SCORE_BATCH_SIZE
    # A training record without max_length: the card's snippet truncates as TrainConfig's default does.
    card = write_model_card(tmp_path, train={"config": {}}).read_text()
    assert f"max_length={TrainConfig().max_length}" in card


def test_quick_is_a_train_option_from_the_config_and_is_not_stored():
    config = TrainConfig(quick=True, lr=1e-4)
    assert (config.method, config.pooling, config.lr) == ("full", "model", 1e-4)
    assert "quick" not in config.to_dict()


def test_quick_with_another_method_is_refused_not_overridden(tmp_path):
    result = CliRunner().invoke(cli, ["train", "--db", str(tmp_path / "s.duckdb"), "--mix", "m", "--out",
                                      str(tmp_path / "rm"), "--quick", "--method", "lora"])
    assert result.exit_code == 2 and "--quick sets --method full" in result.output
    assert TrainConfig(quick=True, method="full").method == "full"


def test_options_left_at_their_default_are_not_chosen(tmp_path):
    seen = {}

    @click.command()
    @option_from_field(TrainConfig, "max_length", "--max-length")
    @option_from_field(TrainConfig, "method", "--method")
    def run(**options) -> None:
        from prefgen.cli_options import config_from_options

        seen["config"] = config_from_options(TrainConfig, **options)

    assert CliRunner().invoke(run, ["--method", "full"]).exit_code == 0
    assert seen["config"].chosen == {"method"} and seen["config"].max_length == 256


def test_column_options_become_a_mapping_and_a_bad_one_names_the_option(tmp_path):
    assert ImportConfig(columns=["prompt=question", "winner = pick"]).columns == {"prompt": "question",
                                                                                  "winner": "pick"}
    result = CliRunner().invoke(cli, ["import-human", str(tmp_path / "x.jsonl"), "--db", str(tmp_path / "s.duckdb"),
                                      "--column", "prompt"])
    assert result.exit_code == 2 and "'--column'" in result.output and "OURS=THEIRS" in result.output


# -- the mix --auto table ---------------------------------------------------------------------------------


def _search_report(confidence: float):
    from prefgen.pipelines.mixing.auto import HUMAN_ONLY, AutoMixReport, score_candidates
    from prefgen.pipelines.mixing.mix import MixReport

    rng = np.random.default_rng(0)
    base = [rng.normal(0.2, 1.0, 40) for _ in range(2)]
    margins = {HUMAN_ONLY: base, "ai-soft": [m + 0.3 for m in base]}
    scored = score_candidates(margins, {HUMAN_ONLY: 0, "ai-soft": 10}, confidence=confidence)
    mix = MixReport("auto", 10, 10, 0, 1.0, 1.0, "hash", {"human": {"available": 10, "left_out": {}},
                                                           "ai": {"available": 0, "left_out": {}},
                                                           "capped_per_prompt": 0, "shortfall": {}})
    return AutoMixReport("search-1", HUMAN_ONLY, "reason", 80, 2, scored, mix, margins, confidence)


@pytest.mark.parametrize("confidence, interval", [(0.8, "60% interval"), (0.95, "90% interval"),
                                                  (0.975, "95% interval")])
def test_mix_auto_table_header_names_the_interval_of_its_confidence(confidence, interval):
    report = _search_report(confidence)
    header = report.lines()[1]
    assert header.rstrip().endswith(f"{interval} (log-lik)") and len(header) <= 100
    ai = next(c for c in report.candidates if c.name == "ai-soft")
    assert report.lines()[3].endswith(f" {ai.ll_low:+.4f} to {ai.ll_high:+.4f}")


# -- options that cannot apply ----------------------------------------------------------------------------


@pytest.fixture
def human_store(tmp_path: Path) -> Path:
    """12 human train pairs, judged too (so no AI row enters: `mix --auto` decides without a search)."""
    from tests.test_soft_labels import world

    db = tmp_path / "s.duckdb"
    with Store(db) as store:
        world(store, tmp_path, n_human=12, n_ai=0, ai_right=1.0)
    return db


@pytest.mark.parametrize("args, complaint", [
    (["--folds", "4"], "--folds only apply to mix --auto"),
    (["--confidence", "0.8", "--base", "smollm2"], "--confidence, --base only apply to mix --auto"),
    (["--max-length", "64"], "--max-length only apply to mix --auto"),
    (["--every-row", "--human-ratio", "0.5"], "--every-row takes every row"),
    (["--auto", "--human-ratio", "0.5"], "mix --auto chooses --human-ratio itself"),
    (["--auto", "--every-row", "--labels", "hard"], "mix --auto chooses --every-row, --labels itself"),
    (["--auto", "--ai-weight", "0.5"], "mix --auto chooses --ai-weight itself"),
])
def test_mix_refuses_options_its_mode_would_ignore(human_store, args, complaint):
    result = CliRunner().invoke(cli, ["mix", "--db", str(human_store), "--name", "m", *args])
    assert result.exit_code == 2, result.output
    assert complaint in result.output
    with Store(human_store, read_only=True) as store:
        assert store.query("SELECT count(*) FROM mixes")[1][0][0] == 0


def test_auto_mix_in_python_refuses_the_options_its_grid_sets(human_store):
    from prefgen.errors import PrefgenError
    from prefgen.pipelines.configs import MixConfig
    from prefgen.pipelines.mixing.auto import auto_mix

    with Store(human_store) as store, pytest.raises(PrefgenError, match="--labels"):
        auto_mix(store, MixConfig(name="m", labels="hard"))


def test_eval_refuses_a_split_with_a_pairs_file_and_any_split_but_heldout(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    pairs = tmp_path / "p.jsonl"
    pairs.write_text("")
    result = CliRunner().invoke(cli, ["eval", "--model", str(model), "--pairs", str(pairs), "--split", "heldout"])
    assert result.exit_code == 2 and "--pairs FILE is evaluated whole" in result.output
    result = CliRunner().invoke(cli, ["eval", "--model", str(model), "--db", str(tmp_path / "s.duckdb"),
                                      "--split", "train"])
    assert result.exit_code == 2 and "'train' is not 'heldout'" in result.output


# -- the recipe of an auto mix ----------------------------------------------------------------------------


def _run_config(db: Path) -> dict:
    with Store(db, read_only=True) as store:
        return json.loads(store.query("SELECT config FROM rm_runs ORDER BY started_at DESC LIMIT 1")[1][0][0])


@pytest.mark.slow
def test_train_on_an_auto_mix_reapplies_the_validated_settings_and_says_when_it_differs(human_store, tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["mix", "--db", str(human_store), "--name", "auto", "--auto", "--max-length", "48",
                                 "--confidence", "0.8", "--seed", "3"])
    assert result.exit_code == 0, result.output
    with Store(human_store, read_only=True) as store:
        auto = json.loads(store.query("SELECT auto FROM mixes WHERE name = 'auto'")[1][0][0])
    assert auto["confidence"] == 0.8
    recipe = auto["train"]
    validated = TrainConfig(max_length=48, seed=3).to_dict()
    assert recipe == {k: v for k, v in validated.items() if k != "out_dir"}  # every setting, not the curriculum only

    result = runner.invoke(cli, ["train", "--db", str(human_store), "--mix", "auto", "--out", str(tmp_path / "rm1"),
                                 "--seed", "5"])  # a seed of its own is the same recipe
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output
    run = _run_config(human_store)
    assert (run["max_length"], run["seed"], run["lr"]) == (48, 5, 1e-3)

    result = runner.invoke(cli, ["train", "--db", str(human_store), "--mix", "auto", "--out", str(tmp_path / "rm2"),
                                 "--max-length", "64", "--lr", "0.01"])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, result.output
    assert "max_length 64 (validated: 48)" in warnings[0] and "lr 0.01 (validated: 0.001)" in warnings[0]
    run = _run_config(human_store)
    assert (run["max_length"], run["lr"], run["seed"]) == (64, 0.01, 3)


def test_a_method_chosen_against_the_recipe_brings_its_own_regime():
    recipe = {k: v for k, v in TrainConfig(base="smollm2", curriculum="ai-then-human").to_dict().items()}
    config, differ = TrainConfig(method="full").with_recipe(recipe)
    assert differ == {"method": ("full", "head")}
    # The base is part of a method's regime (head: smollm2, full: minilm), so it comes with the method too.
    assert (config.base, config.curriculum, config.lr, config.epochs) == ("minilm", "ai-then-human", 2e-4, 1)
    config, differ = TrainConfig(seed=7, out_dir=Path("elsewhere")).with_recipe(recipe)
    assert differ == {} and config.seed == 7 and config.base == "smollm2"


def test_a_recipe_from_before_every_setting_was_recorded_still_applies_its_curriculum():
    config, differ = TrainConfig().with_recipe({"curriculum": "ai-then-human"})
    assert config.curriculum == "ai-then-human" and differ == {}
