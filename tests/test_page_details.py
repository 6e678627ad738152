"""The report page and the evaluation page where decisions are read: every number formatted, a candidate's
difference to human-only drawn with its interval, a wide table scrolls instead of being clipped, a run that sent
nothing is not drawn as 0 calls/s, and the base named as a reader knows it."""

from __future__ import annotations

from prefgen.pipelines.reporting import page
from prefgen.train.card import DEFAULT_BASE_ID, base_display_name
from prefgen.train.config import resolve_base
from prefgen.train.eval_page import context_value


def test_lists_of_scores_are_formatted_like_every_other_number():
    assert page.fmt([0.6111111111, 0.58, 0.6433333]) == "0.6111, 0.58, 0.6433"


def test_a_mapping_of_scores_in_the_eval_context_is_formatted():
    assert context_value({"openai:gpt-4o-mini": 0.9836065573770492}) == "openai:gpt-4o-mini (0.984)"


def test_a_wide_table_scrolls_in_a_box_of_its_own():
    html_table = page.table([{f"column_{i}": i for i in range(40)}])
    assert html_table.startswith('<div class="wide"><table>') and ".wide{overflow-x:auto" in page._STYLE


def test_the_packaged_base_is_named_by_its_hub_id_not_a_site_packages_path():
    assert base_display_name(resolve_base(None)) == DEFAULT_BASE_ID
    assert base_display_name("/some/where/else") == "/some/where/else"


def test_a_run_that_sent_nothing_is_not_drawn_as_zero_calls_per_second():
    runs = [{"run_id": "r1", "status": "finished", "calls_per_s": 500.0, "n_calls_sent": 400},
            {"run_id": "r2", "status": "finished", "calls_per_s": 0.0, "n_calls_sent": 0}]
    section = page.jobs_section({"jobs": [{"job_id": "j"}], "runs": runs, "judge_latency": [], "error_reasons": []})
    assert section.count("<img") == 1  # r1's bar; r2 stays in the table only
    assert "r2" in section


def test_the_auto_plot_draws_differences_to_human_only_with_their_intervals():
    auto = {"confidence": 0.95, "n_val": 120, "candidates": [
        {"name": "human-only", "accuracy": 0.537, "delta": 0.0, "low": 0.0, "high": 0.0},
        {"name": "soft", "accuracy": 0.550, "delta": 0.013, "low": -0.017, "high": 0.043}]}
    png = page.auto_plot("m1", auto)
    assert png.startswith(b"\x89PNG")
