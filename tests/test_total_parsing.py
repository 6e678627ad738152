"""Total parsing: every reply the wire can carry becomes a verdict or a stored parse_error / judge_error with
its reason, never an exception that ends the run. Real SDKs and litellm against the loopback judge."""

from __future__ import annotations

import asyncio
import json
import math

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prefgen.judge.anthropic_backend import parse_message
from prefgen.judge.base import JUDGE_ERROR, OK, PARSE_ERROR, Comparison, Completion, Verdict
from prefgen.judge.core import JudgeClient
from prefgen.judge.openai_backend import parse_chat_completion
from prefgen.judge.parse import p_from_logprobs, parse_completion
from prefgen.judge.prompts import make_template
from prefgen.judge.reply import MAX_TOKENS, MalformedReply
from prefgen.pipelines.labelling import LabelConfig, run_label
from tests.loopback_server import FAULTS, Behaviour, LoopbackServer
from tests.test_http_backends import FACTORIES
from tests.test_label_pipeline import CONSTITUTION, write_pairs
from tests.test_label_pipeline import truth as quality_truth

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
# Replies near the real shape, so that the inner fields (content, logprobs, usage) are reached often.
CHOICE = st.fixed_dictionaries({}, optional={
    "message": st.fixed_dictionaries({}, optional={"content": JSON | st.lists(
        st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url"]) | JSON, "text": JSON}), max_size=3)}),
    "logprobs": st.fixed_dictionaries({"content": st.lists(st.fixed_dictionaries(
        {"token": JSON, "logprob": JSON},
        optional={"top_logprobs": st.lists(st.fixed_dictionaries({"token": JSON, "logprob": JSON}), max_size=3)},
    ), max_size=2) | JSON}) | JSON,
})
USAGE = st.dictionaries(st.sampled_from(["prompt_tokens", "completion_tokens", "input_tokens", "output_tokens",
                                         "cache_read_input_tokens"]), JSON, max_size=4) | JSON
OPENAI_REPLY = JSON | st.fixed_dictionaries({}, optional={"choices": st.lists(CHOICE | JSON, max_size=3) | JSON,
                                                          "usage": USAGE})
ANTHROPIC_REPLY = JSON | st.fixed_dictionaries({}, optional={
    "content": st.lists(st.fixed_dictionaries({}, optional={"type": JSON | st.just("text"), "text": JSON}) | JSON,
                        max_size=3) | JSON,
    "usage": USAGE,
})


def assert_sound(completion: Completion) -> None:
    assert all(isinstance(t, str) for t in completion.texts)
    for count in (completion.tokens_in, completion.tokens_out):  # None: unread, charged the call's bound
        assert count is None or 0 <= count <= MAX_TOKENS
    for token, lp in (completion.first_token_logprobs or {}).items():
        assert isinstance(token, str) and math.isfinite(lp) and lp <= 0
    for mode in ("direct", "cot", "verbalised"):
        parsed = parse_completion(completion, mode)
        assert parsed.p_first is None or 0.0 <= parsed.p_first <= 1.0


# -- the parsers, over arbitrary JSON --------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(OPENAI_REPLY)
def test_any_json_is_a_completion_or_a_malformed_reply_for_chat_completions(data) -> None:
    try:
        completion = parse_chat_completion(data)
    except MalformedReply as exc:
        assert str(exc)
        return
    assert_sound(completion)


@settings(max_examples=400, deadline=None)
@given(ANTHROPIC_REPLY)
def test_any_json_is_a_completion_or_a_malformed_reply_for_messages(data) -> None:
    try:
        completion = parse_message(data)
    except MalformedReply as exc:
        assert str(exc)
        return
    assert_sound(completion)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=4) | st.sampled_from(["A", " B", "**A"]), JSON, max_size=4))
def test_any_logprob_map_gives_a_probability_or_none(logprobs) -> None:
    p = p_from_logprobs(logprobs)
    assert p is None or 0.0 <= p <= 1.0


def test_list_content_reply_becomes_a_verdict() -> None:
    reply = {"choices": [{"message": {"content": [{"type": "text", "text": "B"}, {"type": "image_url"}]}}],
             "usage": {"prompt_tokens": 12, "completion_tokens": 1}}
    completion = parse_chat_completion(reply)
    assert completion.texts == ["B"]
    assert parse_completion(completion, "direct").verdict == "B"


def test_absurd_logprobs_fall_back_to_the_hard_verdict() -> None:
    for odd in (1000, math.nan, -math.inf, "-0.1", None, True):
        reply = {"choices": [{"message": {"content": "A"}, "logprobs": {"content": [
            {"token": "A", "logprob": odd, "top_logprobs": [{"token": "A", "logprob": odd},
                                                            {"token": "B", "logprob": odd}]}]}}]}
        parsed = parse_completion(parse_chat_completion(reply), "direct")
        assert (parsed.verdict, parsed.p_first, parsed.source) == ("A", 1.0, "verdict"), odd


def test_odd_usage_is_bounded_or_unread_never_an_error() -> None:
    # None: the count cannot be read, and the call is charged the bound it reserved (judge.core).
    for value, expected in [("lots", None), (-5, 0), (1e30, MAX_TOKENS), ("12", 12), (3.7, 3), (None, None),
                            ([1], None), (True, None), (math.inf, MAX_TOKENS), (math.nan, None)]:
        reply = {"choices": [{"message": {"content": "A"}}], "usage": {"prompt_tokens": value}}
        assert parse_chat_completion(reply).tokens_in == expected, value


def test_reply_without_choices_names_what_it_got() -> None:
    with pytest.raises(MalformedReply, match="no choices"):
        parse_chat_completion({"error": None})
    with pytest.raises(MalformedReply, match="not a JSON object"):
        parse_chat_completion([1, 2])


# -- every backend, end to end through the real clients -----------------------------------------------


class _Boom:
    """A backend with a bug: what the last-resort guard in judge.core is for."""

    name, model, supports_logprobs = "boom", "boom", False

    async def complete(self, messages, params):
        raise KeyError("surprise")

    async def aclose(self) -> None:
        pass


def client_for(backend, mode: str = "direct") -> JudgeClient:
    template = make_template(None, mode)
    return JudgeClient(backend, template, template.sampling(), max_attempts=2, timeout_s=5,
                       backoff_initial_s=0.001, backoff_max_s=0.01)


def judge_once(factory_name: str, server: LoopbackServer, mode: str = "direct") -> Verdict:
    async def go() -> Verdict:
        backend = FACTORIES[factory_name](server)
        try:
            client = client_for(backend, mode)
            messages = client.render(Comparison("Say hi.", "hi", "Hello there!", "Be warm."))
            return await client.judge(messages)
        finally:
            await backend.aclose()

    return asyncio.run(go())


def test_unexpected_backend_exception_becomes_a_judge_error_record() -> None:
    verdict = asyncio.run(client_for(_Boom()).judge([{"role": "user", "content": "x"}]))
    assert verdict.status == JUDGE_ERROR
    assert verdict.error == "unexpected KeyError: 'surprise'"


@pytest.mark.parametrize("name", list(FACTORIES))
@pytest.mark.parametrize("fault", FAULTS)
def test_every_fault_becomes_a_verdict_or_a_stored_error(name: str, fault: str, loopback: LoopbackServer) -> None:
    loopback.behaviour = Behaviour(truth=None, mode="faults", faults=(fault,), fault_every=1)
    verdict = judge_once(name, loopback)
    assert verdict.status in (OK, PARSE_ERROR, JUDGE_ERROR)
    assert verdict.status == OK or verdict.error
    assert 0 <= verdict.tokens_in <= MAX_TOKENS and math.isfinite(verdict.cost)
    if fault in ("list_content", "logprob_1000", "logprob_nan", "logprob_string", "usage_strings",
                 "usage_absurd", "usage_missing"):
        if name.startswith("litellm") and verdict.status == JUDGE_ERROR:
            # litellm validates OpenAI replies itself and refuses some shapes (list content, string usage) as a
            # 500 of its own: a stored error with litellm's reason, and no traceback text in it.
            assert "litellm" in verdict.error and "Traceback" not in verdict.error
        else:
            assert (verdict.status, verdict.letter) == (OK, "A"), verdict.error
    if fault == "garbage":
        assert verdict.status == PARSE_ERROR


@pytest.mark.parametrize("name", list(FACTORIES))
def test_arbitrary_json_bodies_never_escape_a_backend(name: str, loopback_server: LoopbackServer) -> None:
    @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
    @given(OPENAI_REPLY if "anthropic" not in name else ANTHROPIC_REPLY)
    def check(data) -> None:
        loopback_server.reset(Behaviour(raw_reply=json.dumps(data).encode()))
        verdict = judge_once(name, loopback_server)
        assert verdict.status in (OK, PARSE_ERROR, JUDGE_ERROR)
        assert verdict.status == OK or verdict.error
        # Each backend names the problem itself; the last-resort guard in judge.core is for bugs.
        assert not (verdict.error or "").startswith("unexpected"), verdict.error

    check()


# -- the pipeline: odd replies mixed in, every call stored ---------------------------------------------


@pytest.mark.parametrize("judge,transport", [("openai:gpt-4o-mini", "http"), ("openai:gpt-4o-mini", "sdk"),
                                             ("anthropic:claude-haiku-4-5", "http")])
def test_run_with_odd_replies_mixed_in_finishes_with_every_call_stored(tmp_path, loopback, judge, transport):
    constitution = tmp_path / "c.yaml"
    constitution.write_text(CONSTITUTION, encoding="utf-8")
    pairs = write_pairs(tmp_path / "pairs.jsonl", 30)
    db = tmp_path / "out.duckdb"
    loopback.behaviour = Behaviour(truth=quality_truth, mode="faults", fault_every=2)
    base = loopback.anthropic_base if judge.startswith("anthropic") else loopback.openai_base
    config = LabelConfig(constitution=constitution, pairs=str(pairs), db=db, judge=judge, api_base=base,
                         api_key="test-key", concurrency=8, progress=False, max_attempts=3, transport=transport)

    summary = run_label(config)

    assert summary.status == "finished"
    assert sum(loopback.faults_served.values()) >= 20
    con = duckdb.connect(str(db), read_only=True)
    try:
        stored, statuses = con.execute("SELECT count(DISTINCT request_hash), list(DISTINCT status) FROM judgements"
                                       ).fetchone()
        errors = con.execute("SELECT count(*) FROM judgements WHERE status <> 'ok' AND error IS NULL").fetchone()[0]
        runs = con.execute("SELECT status FROM runs").fetchall()
    finally:
        con.close()
    assert stored == summary.calls_planned == 30 * 2 * 2
    assert OK in statuses and PARSE_ERROR in statuses
    assert errors == 0
    assert runs == [("finished",)]
