"""A fake judge that speaks the OpenAI and Anthropic wire protocols on 127.0.0.1.

The real SDKs (openai, anthropic) and litellm talk to it as they would to the provider, so the backends are
tested end to end with nothing mocked inside them. What the fake judge answers is set by a mutable
`Behaviour` that tests change between calls: position bias, which slot is truly better, the confidence it
reports, and failure modes (garbage text, 429 with Retry-After, 5xx, slow answers).

Answers are deterministic per conversation: the random draws are seeded from a hash of the messages, so the
same request always gets the same answer and a re-run can be compared with the first run.

Run it in a thread (`with LoopbackServer() as server: ...`) or as its own process for benchmarks that want
the server on another core: `python -m tests.loopback_server --port 8123 --latency 0.1`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import math
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

MODES = ("ok", "garbage", "status_429", "status_500", "slow", "faults")

# What "faults" mode mixes into the answers, in turn: odd but possible replies of real servers and proxies.
# The first ones still carry an answer; the rest carry none (or are worth a retry).
FAULTS = (
    "list_content",      # content as a list of typed parts (OpenAI-compatible servers do this)
    "logprob_1000",      # a logprob that is no log-probability
    "logprob_nan",       # NaN / -Infinity logprobs (Python's json writes and reads them)
    "logprob_string",    # logprobs as strings
    "usage_strings",     # "prompt_tokens": "lots"
    "usage_absurd",      # negative and astronomically large token counts
    "usage_missing",     # no usage at all
    "garbage",           # text with no verdict
    "no_choices",        # {} / no content list
    "non_object",        # a JSON array
    "bad_message",       # message / content blocks of the wrong type
    "truncated",         # the body cut in half (worth a retry)
    "status_500",        # a server error (worth a retry)
    "status_429",        # rate limited with Retry-After: 0
)
# The soak benchmark adds answers that come too late (after `slow_s`), to trip the client's timeout.
SOAK_FAULTS = (*FAULTS, "timeout")

_RESPONSE_A = re.compile(r'<response id="A">\n(.*?)\n</response>', re.DOTALL)
_RESPONSE_B = re.compile(r'<response id="B">\n(.*?)\n</response>', re.DOTALL)
_GARBAGE = "I cannot decide."
_JSON = "application/json"
_OTHER = {"A": "B", "B": "A"}


@dataclass
class Behaviour:
    """How the fake judge answers. Tests mutate the fields between requests.

    first_bias: probability of answering the first slot ("A") whatever the content.
    truth: given (first text, second text) returns the better slot, "A" or "B"; None means always "A".
    confidence: the probability c reported for the chosen letter (logprobs and verbalised confidence).
    confidence_spread: c varies per answer, uniformly in confidence +- spread (clipped to [0.5, 0.999]), as a
        real judge's does; 0 reports the same c every time.
    confidence_of: given (first text, second text) returns the pair's c, replacing `confidence` (a judge whose
        confidence depends on the pair, e.g. a calibrated one that is right with probability c).
    mode: "ok", "garbage" (text with no verdict), "slow" (sleep `slow_s` first, to trip client timeouts),
        or "status_NNN" for any HTTP status (the named ones are "status_429" and "status_500").
    fail_first_n: with a "status_NNN" mode, only the first n requests fail (counted since the behaviour was
        set or the server reset), then answers are normal again. 0 means every request fails.
    retry_after: the Retry-After header value sent with a 429 (None sends no header).
    latency_s: sleep before every answer (benchmarks).
    fault_every: in "faults" mode, every k-th request gets the next of `faults` (in turn), the others a normal
        answer; 1 makes every request a fault.
    raw_reply: when set, every request is answered 200 with exactly these bytes (property tests).
    usage_factor: reported token counts are multiplied by this (a provider that counts more than prefgen
        would estimate at four characters a token).
    strict_paths: serve only /v1/chat/completions and /v1/messages, as the real providers do, so that a base
        URL of the wrong form (an Anthropic base ending in /v1) gets a 404; by default any prefix is served.
    states_confidence: False makes the judge ignore --mode verbalised's request for a `Confidence: N` line.
    api_key: when set, a request without this key (Bearer or x-api-key) gets a 401, as from a provider.
    prompt_cache: report prompt-cache hits as the providers do (`PromptCache`): OpenAI's automatic prefix cache
        (`prompt_tokens_details.cached_tokens`), Anthropic's `cache_control` (`cache_read_input_tokens`,
        `cache_creation_input_tokens`).
    token_budget / request_budget: a rate limit per `budget_window_s` (tokens: prompt + max_tokens, as OpenAI
        counts them), as token buckets (`RateWindow`); past it, 429 with Retry-After. Every answer then carries
        `x-ratelimit-limit/remaining/reset-requests/-tokens` headers, as OpenAI's do.
    error_message: the message a "status_NNN" error carries (a provider's words reach the user's terminal).
    """

    first_bias: float = 0.0
    truth: Callable[[str, str], str] | None = None
    confidence: float = 0.9
    confidence_spread: float = 0.0
    confidence_of: Callable[[str, str], float] | None = None
    mode: str = "ok"
    fail_first_n: int = 0
    retry_after: float | None = None
    latency_s: float = 0.0
    slow_s: float = 30.0
    faults: tuple[str, ...] = FAULTS
    fault_every: int = 3
    raw_reply: bytes | None = None
    usage_factor: float = 1.0
    strict_paths: bool = False
    api_key: str | None = None
    states_confidence: bool = True
    prompt_cache: bool = False
    token_budget: int | None = None
    request_budget: int | None = None
    budget_window_s: float = 1.0
    error_message: str | None = None  # the message of a "status_NNN" error (default "loopback says NNN")


@dataclass(frozen=True, slots=True)
class SeenRequest:
    """One request as the server saw it. `key` hashes the conversation (system + messages)."""

    path: str
    body: dict[str, Any]
    key: str
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes = b""  # the body's bytes as received


@dataclass(slots=True)
class _Judged:
    """The parts of a request that decide the answer."""

    first: str
    second: str
    ask: str  # "direct", "cot" or "verbalised", read from the instruction after the last response


class LoopbackServer:
    """The fake judge on 127.0.0.1, in a background thread with its own event loop."""

    def __init__(self, port: int = 0, behaviour: Behaviour | None = None, *, record: bool = True) -> None:
        self._behaviour = behaviour or Behaviour()
        # A long benchmark run in its own process counts requests but does not keep every body.
        self.record = record
        self.requests: list[SeenRequest] = []
        self.received = 0
        self.failures = 0  # failures served under the current behaviour, for `fail_first_n`
        self.faults_served: dict[str, int] = {}  # "faults" mode: how often each fault was sent
        self.cache = PromptCache()
        self.limits = RateWindow()
        self.throttled = 0  # 429s sent because a rate budget was spent
        self.in_flight = 0  # requests being answered (slept on) now, and the most at once
        self.peak_in_flight = 0
        from tests.loopback_batches import BatchDesk  # the batch wire protocols; answers come from here

        self.batches = BatchDesk(self)
        self._port = port
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def openai_base(self) -> str:
        return f"{self.url}/v1"

    @property
    def anthropic_base(self) -> str:
        # The Anthropic SDK and litellm append /v1/messages themselves.
        return self.url

    @property
    def request_count(self) -> int:
        return self.received

    @property
    def behaviour(self) -> Behaviour:
        return self._behaviour

    @behaviour.setter
    def behaviour(self, behaviour: Behaviour) -> None:
        self._behaviour = behaviour
        self.failures = 0
        self.faults_served = {}

    def reset(self, behaviour: Behaviour | None = None) -> None:
        """Forget the seen requests, the prompt cache, the rate window and the batches, and go back to the
        default (or the given) behaviour."""
        self.requests.clear()
        self.received = 0
        self.throttled = 0
        self.peak_in_flight = 0
        self.cache = PromptCache()
        self.limits = RateWindow()
        self.batches.reset()
        self.behaviour = behaviour or Behaviour()

    def start(self) -> LoopbackServer:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, args=(ready,), name="loopback-server", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("loopback server did not start within 10 s")
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self._loop = self._thread = None

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serve(self, ready: threading.Event) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self.open())
        ready.set()
        self._loop.run_forever()

    async def open(self) -> None:
        """Bind and listen on the current event loop (the separate-process entry point uses this too)."""
        # No access log: formatting a log line per request costs more than answering it.
        # A handler whose client gave up (a timeout test) is cancelled rather than left asleep, and a short
        # shutdown timeout keeps stop() from waiting out a "slow" sleep.
        self._runner = web.AppRunner(
            self._app(), access_log=None, handler_cancellation=True, shutdown_timeout=0.2
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self._port, backlog=1024)
        await site.start()
        self._port = self._runner.addresses[0][1]

    async def _shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        # Handlers still asleep ("slow" mode, latency) would die with the loop and warn; end them here.
        pending = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/models", self._models)
        # The request count, for a benchmark that runs the server in another process.
        app.router.add_get("/_count", self._count)
        self.batches.add_routes(app)  # before the catch-all below
        app.router.add_post("/{prefix:.*}", self._dispatch)
        return app

    # -- handlers ----------------------------------------------------------------------------------

    async def _models(self, request: web.Request) -> web.Response:
        return _json({"object": "list", "data": [{"id": "loopback-judge", "object": "model", "owned_by": "tests"}]})

    async def _count(self, request: web.Request) -> web.Response:
        return _json({"received": self.received, "faults": self.faults_served, "throttled": self.throttled,
                      "batches": self.batches.counts()})

    async def _dispatch(self, request: web.Request) -> web.Response:
        # Routed by suffix so that base URLs with or without /v1 both work, as they do for real proxies.
        path = request.path
        if self.behaviour.strict_paths and path not in ("/v1/chat/completions", "/v1/messages"):
            return _error(404, f"no route for POST {path}", "not_found_error", "openai")
        if path.endswith("/chat/completions"):
            protocol = "openai"
        elif path.endswith("/messages"):
            protocol = "anthropic"
        else:
            return _error(404, f"no route for POST {path}", "not_found_error", "openai")
        raw = await request.read()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            return _error(400, "the request body is not a JSON object", "invalid_request_error", protocol)
        turns = _conversation(body)
        key = hashlib.blake2b("\x00".join(turns).encode(), digest_size=8).hexdigest()
        self.received += 1
        if self.record:
            self.requests.append(SeenRequest(path, body, key, dict(request.headers), raw))
        behaviour = self.behaviour
        if behaviour.api_key is not None and behaviour.api_key not in (
            request.headers.get("x-api-key"), request.headers.get("Authorization", "").removeprefix("Bearer ")
        ):
            return _error(401, "invalid x-api-key" if protocol == "anthropic" else "Incorrect API key provided",
                          "authentication_error", protocol)
        if behaviour.raw_reply is not None:
            return web.Response(body=behaviour.raw_reply, content_type=_JSON)
        failure = self._failure(behaviour, protocol)
        if failure is not None:
            return failure
        limit_headers: dict[str, str] | None = None
        if behaviour.token_budget is not None or behaviour.request_budget is not None:
            cost = sum(_tokens(t) for t in turns) + int(body.get("max_tokens") or 0) * int(body.get("n") or 1)
            limit_headers, allowed = self.limits.take(behaviour, cost)
            if not allowed:
                self.throttled += 1
                return _error(429, "Rate limit reached for tokens per window (loopback)", "rate_limit_error",
                              protocol, limit_headers)
        fault = self._next_fault(behaviour)
        if behaviour.latency_s:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            try:
                await asyncio.sleep(behaviour.latency_s)
            finally:
                self.in_flight -= 1
        if behaviour.mode == "slow" or fault == "timeout":
            await asyncio.sleep(behaviour.slow_s)
        if not body.get("model") or not isinstance(body.get("messages"), list):
            return _error(400, "model and messages are required", "invalid_request_error", protocol)
        payload = self.reply(protocol, body, turns, key)
        if fault is not None and fault != "timeout":
            return _faulty(fault, payload, protocol)
        return _json(payload, headers=limit_headers)

    def reply(self, protocol: str, body: dict[str, Any], turns: list[str], key: str) -> dict[str, Any]:
        """The answer to a well-formed request, asked directly or inside a batch."""
        behaviour = self.behaviour
        user = "\n".join(turns)
        if protocol == "openai":
            answer = _answers(behaviour, user, key, int(body.get("n") or 1))
            payload = _chat_completion(body, answer, turns, behaviour, next(self._ids))
            if behaviour.prompt_cache:
                cached = min(self.cache.openai(body), payload["usage"]["prompt_tokens"])
                payload["usage"]["prompt_tokens_details"] = {"cached_tokens": cached, "audio_tokens": 0}
        else:
            answer = _answers(behaviour, user, key, 1)  # the Messages API has no `n`
            payload = _anthropic_message(body, answer.texts[0], turns, next(self._ids))
            if behaviour.prompt_cache:
                usage = payload["usage"]
                read, written = self.cache.anthropic(body, usage["input_tokens"])
                usage.update(input_tokens=usage["input_tokens"] - read - written, cache_read_input_tokens=read,
                             cache_creation_input_tokens=written)
        if behaviour.usage_factor != 1.0:
            payload["usage"] = {k: int(v * behaviour.usage_factor) if isinstance(v, (int, float)) else v
                                for k, v in payload["usage"].items()}
        return payload

    def _next_fault(self, behaviour: Behaviour) -> str | None:
        if behaviour.mode != "faults" or not behaviour.faults or self.received % max(behaviour.fault_every, 1):
            return None
        served = sum(self.faults_served.values())
        fault = behaviour.faults[served % len(behaviour.faults)]
        self.faults_served[fault] = self.faults_served.get(fault, 0) + 1
        return fault

    def _failure(self, behaviour: Behaviour, protocol: str) -> web.Response | None:
        if not behaviour.mode.startswith("status_"):
            return None
        if behaviour.fail_first_n and self.failures >= behaviour.fail_first_n:
            return None
        self.failures += 1
        status = int(behaviour.mode.removeprefix("status_"))
        headers = {}
        if status == 429 and behaviour.retry_after is not None:
            headers["Retry-After"] = _seconds(behaviour.retry_after)
        kind = "rate_limit_error" if status == 429 else "api_error" if status >= 500 else "invalid_request_error"
        return _error(status, behaviour.error_message or f"loopback says {status}", kind, protocol, headers)


# -- prompt caching and rate limits ----------------------------------------------------------------


class PromptCache:
    """Prompt caching as the providers describe it, in the loopback's token unit (four characters):
    - OpenAI, automatically: the longest prefix seen before that is at least 1,024 tokens long, in steps of 128;
    - Anthropic, where asked: the prefix up to a block marked `cache_control`, at least `min_tokens` long, is read
      when seen before and written otherwise (reads the longest marked prefix that hits).
    A prefix counts as seen once a request carrying it arrived (a real cache holds it once the first request
    with it has been processed; the loopback answers at once)."""

    def __init__(self, min_tokens: int = 1024) -> None:
        self.min_tokens = min_tokens
        self.seen: set[bytes] = set()

    def openai(self, body: dict[str, Any]) -> int:
        text = "".join(f"{m.get('role')}\x00{_text(m.get('content'))}\x01" for m in body.get("messages") or []
                       if isinstance(m, dict)).encode()
        digest, done, cached, new = hashlib.blake2b(digest_size=16), 0, 0, []
        for tokens in range(1024, len(text) // 4 + 1, 128):
            digest.update(text[done:4 * tokens])
            done = 4 * tokens
            key = digest.copy().digest()
            if key in self.seen:
                cached = tokens
            new.append(key)
        self.seen.update(new)
        return cached

    def anthropic(self, body: dict[str, Any], input_tokens: int) -> tuple[int, int]:
        """(tokens read, tokens written) of one request."""
        blocks: list[tuple[str, bool]] = []
        system = body.get("system")
        blocks += _blocks(system)
        for message in body.get("messages") or []:
            if isinstance(message, dict):
                blocks += _blocks(message.get("content"))
        text, marks = "", []
        for block_text, marked in blocks:
            text += block_text + "\x01"
            if marked and len(text) // 4 >= self.min_tokens:
                marks.append((len(text) // 4, hashlib.blake2b(text.encode(), digest_size=16).digest()))
        if not marks:
            return 0, 0
        read = max((tokens for tokens, key in marks if key in self.seen), default=0)
        self.seen.update(key for _, key in marks)
        longest = min(marks[-1][0], input_tokens)
        read = min(read, input_tokens)
        return read, max(longest - read, 0)


def _blocks(content: Any) -> list[tuple[str, bool]]:
    """(text, marked for the cache) of each block of a system prompt or message content."""
    if isinstance(content, str):
        return [(content, False)]
    if isinstance(content, list):
        return [(str(b.get("text", "")), bool(b.get("cache_control"))) for b in content if isinstance(b, dict)]
    return []


class RateWindow:
    """Rate limits as token buckets (the algorithm OpenAI and Anthropic document): `token_budget` tokens and
    `request_budget` requests, each refilled at budget / `budget_window_s` per second. A request the buckets
    cannot hold gets a 429 with Retry-After (the time until it would fit); every answer carries OpenAI's
    `x-ratelimit-limit/remaining/reset-requests/-tokens` headers (reset: time until the bucket is full)."""

    def __init__(self) -> None:
        self.updated: float | None = None
        self.tokens = 0.0  # the buckets' levels
        self.requests = 0.0

    def take(self, behaviour: Behaviour, cost: int) -> tuple[dict[str, str], bool]:
        now = time.monotonic()
        buckets = [(name, float(budget), need) for name, budget, need in
                   (("tokens", behaviour.token_budget, cost), ("requests", behaviour.request_budget, 1))
                   if budget is not None]
        if self.updated is None:
            self.tokens, self.requests = float(behaviour.token_budget or 0), float(behaviour.request_budget or 0)
        else:
            elapsed = now - self.updated
            for name, budget, _ in buckets:
                level = getattr(self, name) + budget / behaviour.budget_window_s * elapsed
                setattr(self, name, min(level, budget))
        self.updated = now
        waits = [(need - getattr(self, name)) * behaviour.budget_window_s / budget
                 for name, budget, need in buckets if getattr(self, name) < need]
        fits = not waits
        if fits:
            for name, _, need in buckets:
                setattr(self, name, getattr(self, name) - need)
        headers = {}
        for name, budget, _ in buckets:
            level = getattr(self, name)
            headers[f"x-ratelimit-limit-{name}"] = str(int(budget))
            headers[f"x-ratelimit-remaining-{name}"] = str(max(int(level), 0))
            headers[f"x-ratelimit-reset-{name}"] = f"{(budget - level) * behaviour.budget_window_s / budget * 1000:.0f}ms"
        if not fits:
            headers["retry-after-ms"] = f"{max(waits) * 1000:.0f}"
            headers["retry-after"] = str(math.ceil(max(waits)))
        return headers, fits


# -- request reading -------------------------------------------------------------------------------


def _text(content: Any) -> str:
    """Message content is a string, or (Anthropic, and OpenAI multi-part) a list of typed blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(b.get("text", "") for b in content if isinstance(b, dict))
    return ""


def _conversation(body: dict[str, Any]) -> list[str]:
    """The texts of the conversation, system first, the same for both protocols."""
    turns = [_text(body["system"])] if body.get("system") else []
    messages = body.get("messages")
    if isinstance(messages, list):
        turns.extend(_text(m.get("content")) for m in messages if isinstance(m, dict))
    return turns


_PROMPT = re.compile(r"<prompt>\n.*?\n</prompt>", re.DOTALL)


def _judged(user: str) -> _Judged:
    """`user`: the conversation's text (system first). The instructions are what is outside the data: after the
    responses (the v1 layout) or in the system message before them (v2)."""
    first, second = _RESPONSE_A.search(user), _RESPONSE_B.search(user)
    instructions = _PROMPT.sub("", _RESPONSE_B.sub("", _RESPONSE_A.sub("", user)))
    ask = "cot" if "Verdict:" in instructions else "verbalised" if "Confidence:" in instructions else "direct"
    return _Judged(
        first=first[1] if first else "",
        second=second[1] if second else "",
        ask=ask,
    )


# -- answering -------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Answer:
    letters: list[str | None]  # one per choice; None in garbage mode
    texts: list[str]
    confidences: list[float]


def _answers(behaviour: Behaviour, user: str, key: str, n: int) -> _Answer:
    judged = _judged(user)
    rng = random.Random(int(key, 16))
    if behaviour.mode == "garbage":
        return _Answer([None] * n, [_GARBAGE] * n, [behaviour.confidence] * n)
    truth = behaviour.truth(judged.first, judged.second) if behaviour.truth else "A"
    letters: list[str | None] = ["A" if rng.random() < behaviour.first_bias else truth for _ in range(n)]
    spread = behaviour.confidence_spread
    centre = behaviour.confidence_of(judged.first, judged.second) if behaviour.confidence_of else behaviour.confidence
    confidences = [min(max(centre + rng.uniform(-spread, spread), 0.5), 0.999) if spread
                   else centre for _ in range(n)]
    texts = [_render(letter, judged, c, behaviour.states_confidence) for letter, c in zip(letters, confidences)]
    return _Answer(letters, texts, confidences)


def _render(letter: str | None, judged: _Judged, confidence: float, states_confidence: bool = True) -> str:
    if judged.ask == "cot":
        return (
            f"Response A has {len(judged.first)} characters and response B has {len(judged.second)}. "
            f"Weighing both against the principle.\nVerdict: {letter}"
        )
    if judged.ask == "verbalised" and states_confidence:
        return f"{letter}\nConfidence: {round(confidence * 100)}"
    return str(letter)


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


def _first_token_logprobs(letter: str | None, confidence: float) -> dict[str, Any]:
    if letter is None:  # garbage: the first token is not a letter at all
        top = [("I", -0.05), ("The", -3.0), ("A", -6.0)]
    else:
        c = min(max(confidence, 1e-9), 1 - 1e-9)
        top = [(letter, math.log(c)), (_OTHER[letter], math.log(1 - c))]
    entries = [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in top]
    return {"content": [{**entries[0], "top_logprobs": entries}], "refusal": None}


def _chat_completion(
    body: dict[str, Any], answer: _Answer, turns: list[str], behaviour: Behaviour, seq: int
) -> dict[str, Any]:
    want_logprobs = bool(body.get("logprobs"))
    choices = []
    for i, (letter, text, confidence) in enumerate(zip(answer.letters, answer.texts, answer.confidences)):
        choice: dict[str, Any] = {
            "index": i,
            "message": {"role": "assistant", "content": text, "refusal": None},
            "finish_reason": "stop",
            "logprobs": None,
        }
        if want_logprobs:
            logprobs = _first_token_logprobs(letter, confidence)
            top_k = int(body.get("top_logprobs") or 0)
            logprobs["content"][0]["top_logprobs"] = logprobs["content"][0]["top_logprobs"][:top_k]
            choice["logprobs"] = logprobs
        choices.append(choice)
    prompt_tokens = sum(_tokens(t) for t in turns)
    completion_tokens = sum(_tokens(t) for t in answer.texts)
    return {
        "id": f"chatcmpl-loopback-{seq}",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": body.get("model"),
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
        "system_fingerprint": "loopback",
    }


def _anthropic_message(body: dict[str, Any], text: str, turns: list[str], seq: int) -> dict[str, Any]:
    return {
        "id": f"msg_loopback_{seq}",
        "type": "message",
        "role": "assistant",
        "model": body.get("model"),
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": sum(_tokens(t) for t in turns), "output_tokens": _tokens(text)},
    }


# -- faults ----------------------------------------------------------------------------------------


def _faulty(fault: str, payload: dict[str, Any], protocol: str) -> web.Response:
    """A normal answer bent into one of the FAULTS shapes. Written with Python's json: it allows NaN."""
    if fault.startswith("status_"):
        status = int(fault.removeprefix("status_"))
        headers = {"Retry-After": "0"} if status == 429 else None
        return _error(status, f"loopback fault {status}", "api_error", protocol, headers)
    body: Any = payload
    openai = protocol == "openai"
    choices = payload.get("choices") or []
    if fault == "list_content":
        if openai:
            for choice in choices:
                text = choice["message"]["content"]
                choice["message"]["content"] = [{"type": "text", "text": text}, {"type": "image_url", "image_url": {}}]
        else:
            payload["content"] = [{"type": "thinking", "thinking": "hmm"}, *payload["content"]]
    elif fault.startswith("logprob_"):
        odd = {"logprob_1000": 1000, "logprob_nan": math.nan, "logprob_string": "-0.1"}[fault]
        for choice in choices:
            content = (choice.get("logprobs") or {}).get("content") or []
            for entry in content[:1]:
                entry["logprob"] = odd
                for i, top in enumerate(entry.get("top_logprobs") or []):
                    top["logprob"] = -math.inf if fault == "logprob_nan" and i else odd
    elif fault == "usage_strings":
        payload["usage"] = {k: "lots" for k in payload["usage"]}
    elif fault == "usage_absurd":
        keys = list(payload["usage"])
        payload["usage"] = {k: (-5 if i == 0 else 1e30) for i, k in enumerate(keys)}
    elif fault == "usage_missing":
        payload.pop("usage", None)
    elif fault == "garbage":
        if openai:
            for choice in choices:
                choice["message"]["content"] = _GARBAGE
        else:
            payload["content"] = [{"type": "text", "text": _GARBAGE}]
    elif fault == "no_choices":
        body = {} if openai else {k: v for k, v in payload.items() if k != "content"} | {"content": 7}
    elif fault == "non_object":
        body = [1, "two", None]
    elif fault == "bad_message":
        if openai:
            for choice in choices:
                choice["message"] = "A"
        else:
            payload["content"] = [7, "A", {"type": "text", "text": None}]
    raw = json.dumps(body).encode()
    if fault == "truncated":
        raw = raw[: len(raw) // 2]
    return web.Response(body=raw, content_type=_JSON)


# -- responses -------------------------------------------------------------------------------------


def _json(payload: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, content_type=_JSON, headers=headers)


def _error(
    status: int, message: str, kind: str, protocol: str, headers: dict[str, str] | None = None
) -> web.Response:
    if protocol == "anthropic":
        payload = {"type": "error", "error": {"type": kind, "message": message}}
    else:
        payload = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    return _json(payload, status, headers)


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


# -- separate process ------------------------------------------------------------------------------


async def _serve_forever(port: int, behaviour: Behaviour) -> None:
    server = LoopbackServer(port, behaviour, record=False)
    await server.open()
    print(f"loopback judge listening on {server.url}", flush=True)
    await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fake OpenAI/Anthropic judge on 127.0.0.1")
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds to sleep before each answer")
    parser.add_argument("--first-bias", type=float, default=0.0)
    parser.add_argument("--confidence", type=float, default=0.9)
    parser.add_argument("--mode", default="ok", help=f"one of {', '.join(MODES)}, or status_NNN")
    parser.add_argument("--fault-every", type=int, default=3, help="faults mode: every k-th request is a fault")
    parser.add_argument("--faults", choices=["all", "soak"], default="all",
                        help="faults mode: the FAULTS list, or SOAK_FAULTS (adds late answers)")
    parser.add_argument("--slow", type=float, default=30.0, help="seconds a slow (or 'timeout') answer waits")
    args = parser.parse_args(argv)
    behaviour = Behaviour(
        first_bias=args.first_bias, confidence=args.confidence, mode=args.mode, latency_s=args.latency,
        fault_every=args.fault_every, faults=SOAK_FAULTS if args.faults == "soak" else FAULTS, slow_s=args.slow,
    )
    try:
        asyncio.run(_serve_forever(args.port, behaviour))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
