"""The per-call shortcuts give exactly what the careful code gives: the common reply read directly, the request
hash with its identity encoded once, the byte bound of ASCII text without encoding it."""

from __future__ import annotations

import copy
import math

import pytest

from prefgen.hashing import content_hash
from prefgen.judge.base import Comparison
from prefgen.judge.core import JudgeClient
from prefgen.judge.openai_backend import _parse_carefully, parse_chat_completion
from prefgen.judge.prompts import make_template


def reply(**changes) -> dict:
    top = [{"token": "A", "logprob": -0.1, "bytes": [65]}, {"token": "B", "logprob": -2.4, "bytes": [66]}]
    data = {
        "id": "x", "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "A"}, "finish_reason": "stop",
                     "logprobs": {"content": [{"token": "A", "logprob": -0.1, "top_logprobs": top}]}}],
        "usage": {"prompt_tokens": 180, "completion_tokens": 1, "total_tokens": 181},
    }
    for path, value in changes.items():
        *parents, last = path.split("__")
        target = data
        for key in parents:
            target = target[int(key)] if key.isdigit() else target[key]
        if value is _DROP:
            del target[last]
        else:
            target[int(last) if last.isdigit() else last] = value
    return data


_DROP = object()
LOGPROBS = "choices__0__logprobs__content__0"

VARIANTS = {
    "plain": {},
    "no logprobs": {"choices__0__logprobs": None},
    "cached tokens": {"usage__prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0}},
    "cache writes (litellm)": {"usage__cache_creation_input_tokens": 300},
    "null cached tokens": {"usage__prompt_tokens_details": {"cached_tokens": None}},
    "list content": {"choices__0__message__content": [{"type": "text", "text": "A"}]},
    "three choices": {"choices": [reply()["choices"][0]] * 3},
    "integer logprob": {f"{LOGPROBS}__top_logprobs__0__logprob": 0},
    "rounding above zero": {f"{LOGPROBS}__top_logprobs__0__logprob": 1e-7},
    "nan logprob": {f"{LOGPROBS}__top_logprobs__1__logprob": math.nan},
    "minus infinity": {f"{LOGPROBS}__top_logprobs__1__logprob": -math.inf},
    "logprob 1000": {f"{LOGPROBS}__logprob": 1000.0},
    "string logprob": {f"{LOGPROBS}__top_logprobs__0__logprob": "-0.1"},
    "entry not an object": {f"{LOGPROBS}__top_logprobs": ["A", {"token": "B", "logprob": -2.0}]},
    "chosen token missing": {f"{LOGPROBS}__token": _DROP},
    "chosen token not in tops": {f"{LOGPROBS}__token": " A"},
    "no top logprobs": {f"{LOGPROBS}__top_logprobs": []},
    "usage strings": {"usage__prompt_tokens": "180"},
    "usage float": {"usage__completion_tokens": 1.0},
    "negative usage": {"usage__prompt_tokens": -5},
    "absurd usage": {"usage__prompt_tokens": 10**12},
    "usage missing": {"usage": _DROP},
    "message missing": {"choices__0__message": _DROP},
}


@pytest.mark.parametrize("name", VARIANTS)
def test_the_common_reply_is_read_as_the_careful_parser_reads_it(name):
    data = reply(**VARIANTS[name])
    assert parse_chat_completion(copy.deepcopy(data)) == _parse_carefully(copy.deepcopy(data))


class _Backend:
    name = "openai"
    model = "gpt-4o-mini"
    supports_logprobs = True


@pytest.mark.parametrize("text", ["plain ascii", "café ünïcode", "emoji \U0001f600 and CJK 漢字", ""])
def test_the_byte_bound_is_the_utf8_length_whatever_the_text(text):
    template = make_template()
    client = JudgeClient(_Backend(), template, template.sampling())
    messages = [{"role": "system", "content": text}, {"role": "user", "content": text * 3}]
    tokens_in, _ = client.upper_bound_tokens(messages)
    assert tokens_in == len(text.encode()) * 4 + 2 * 8 + 16


def test_the_request_hash_is_the_content_hash_of_identity_and_messages():
    template = make_template(mode="verbalised")
    client = JudgeClient(_Backend(), template, template.sampling())
    for comparison in (Comparison("q?", "a", "b", "p"), Comparison("é?", "ü", "漢", "\U0001f600")):
        messages = client.render(comparison)
        assert client.request_hash(messages) == content_hash(["judge-request", client.identity, messages])
