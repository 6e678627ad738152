"""OpenAI chat completions (and every server that speaks them: vLLM, llama.cpp, Ollama, proxies).

One request builder and one response parser, two transports. Judging is thousands of tiny calls, and the
official SDK spends several times more CPU per call than the call needs: against the loopback judge at
100 ms latency, 64 in flight, 2 cores, the SDK made ~70 calls/s where bare aiohttp and the default
transport here both made ~580. So `transport="http"` posts the wire format over one shared aiohttp session,
and `transport="sdk"` goes through `openai.AsyncOpenAI` for those who want the SDK's own HTTP stack. Both
put the same fields on the wire and give the same `Completion`.

Nothing here retries: the SDK's own retries are off, and `judge.core` retries `TransientError` in one place.
The status mapping and Retry-After parsing (`judge.http_errors`) are shared with the other HTTP backends.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import Any, Protocol

import orjson

from prefgen.errors import PrefgenError
from prefgen.judge import endpoint, reply
from prefgen.judge.base import Completion, PermanentError, SamplingParams, TransientError
from prefgen.judge.http_errors import error_for_status, error_message, sdk_error_message
from prefgen.judge.ratelimit import RateLimits, rate_limits

DEFAULT_BASE_URL = "https://api.openai.com/v1"
TRANSPORTS = ("http", "sdk")


# -- wire format ---------------------------------------------------------------------------------------


def build_request(model: str, messages: list[dict[str, str]], params: SamplingParams) -> dict[str, Any]:
    """The chat-completions body. `n` is sent only above 1: some compatible servers reject the field."""
    body: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "max_tokens": params.max_tokens,
        "temperature": params.temperature,
    }
    if params.n != 1:
        body["n"] = params.n
    if params.logprobs:
        body["logprobs"] = True
        body["top_logprobs"] = params.top_logprobs
    body.update(params.extra)
    return body


def first_token_logprobs(choice: Mapping[str, Any]) -> dict[str, float] | None:
    """{token: logprob} over the first content token's alternatives, the chosen token included.

    Entries that are not a (string token, finite logprob <= 0) pair are skipped: a broken logprob report costs
    the graded confidence of this answer, not the answer.
    """
    logprobs = choice.get("logprobs")
    content = logprobs.get("content") if isinstance(logprobs, Mapping) else None
    if not isinstance(content, list) or not content or not isinstance(content[0], Mapping):
        return None
    first = content[0]
    found: dict[str, float] = {}
    tops = first.get("top_logprobs")
    for top in tops if isinstance(tops, list) else ():
        if isinstance(top, Mapping) and isinstance(top.get("token"), str):
            value = reply.logprob(top.get("logprob"))
            if value is not None:
                found[top["token"]] = value
    chosen = reply.logprob(first.get("logprob"))
    if isinstance(first.get("token"), str) and chosen is not None:
        found.setdefault(first["token"], chosen)
    return found or None


def parse_chat_completion(data: Any) -> Completion:
    """A chat.completion JSON object (as a dict) to a `Completion`; logprobs come from the first choice.

    Total over JSON: a reply with no usable choices raises `MalformedReply` (stored as a judge_error with the
    reason); odd usage or logprobs are read as far as they make sense (see `judge.reply`).
    """
    plain = _plain_reply(data)
    return plain if plain is not None else _parse_carefully(data)


def _plain_reply(data: Any) -> Completion | None:
    """The shape nearly every reply has (one choice, text content, integer usage, well-formed logprobs), read
    without the checks a broken reply needs: a few microseconds a call, at hundreds of calls a second. None:
    anything else, which `_parse_carefully` reads; on what this accepts the two give the same `Completion`."""
    if type(data) is not dict:
        return None
    choices = data.get("choices")
    if type(choices) is not list or len(choices) != 1 or type(choices[0]) is not dict:
        return None
    choice = choices[0]
    message = choice.get("message")
    text = message.get("content") if type(message) is dict else None
    usage = data.get("usage")
    if type(text) is not str or type(usage) is not dict:
        return None
    counts = [usage.get("prompt_tokens"), usage.get("completion_tokens"), 0, usage.get("cache_creation_input_tokens", 0)]
    details = usage.get("prompt_tokens_details")
    if details is not None:
        if type(details) is not dict:
            return None
        counts[2] = details.get("cached_tokens", 0)
    if not all(type(c) is int and 0 <= c <= reply.MAX_TOKENS for c in counts):
        return None
    logprobs: dict[str, float] | None = None
    if choice.get("logprobs") is not None:
        logprobs = _plain_logprobs(choice["logprobs"])
        if logprobs is None:
            return None
    return Completion(texts=[text], tokens_in=counts[0], tokens_out=counts[1], first_token_logprobs=logprobs,
                      tokens_cached=counts[2], tokens_cache_written=counts[3])


def _plain_logprobs(logprobs: Any) -> dict[str, float] | None:
    """`first_token_logprobs` of a well-formed report (string tokens, float log-probabilities in [-inf, 0]);
    None when anything differs."""
    content = logprobs.get("content") if type(logprobs) is dict else None
    first = content[0] if type(content) is list and content else None
    tops = first.get("top_logprobs") if type(first) is dict else None
    if type(tops) is not list:
        return None
    if not all(_plain_entry(top) for top in tops) or not _plain_entry(first):
        return None
    found = {top["token"]: top["logprob"] for top in tops}
    found.setdefault(first["token"], first["logprob"])
    return found


def _plain_entry(entry: Any) -> bool:
    if type(entry) is not dict:
        return False
    value = entry.get("logprob")
    return type(entry.get("token")) is str and type(value) is float and -math.inf < value <= 0.0


def _parse_carefully(data: Any) -> Completion:
    if not isinstance(data, Mapping):
        raise reply.MalformedReply(f"the reply is not a JSON object: {reply.shape(data)}")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        raise reply.MalformedReply(
            f"the reply has no choices; is this a chat-completions endpoint? got {reply.shape(data, 300)}"
        )
    texts = []
    for i, choice in enumerate(choices):
        if not isinstance(choice, Mapping):
            raise reply.MalformedReply(f"choices[{i}] is not an object: {reply.shape(choice)}")
        message = choice.get("message")
        if message is None:
            message = {}
        if not isinstance(message, Mapping):
            raise reply.MalformedReply(f"choices[{i}].message is not an object: {reply.shape(message)}")
        texts.append(reply.content_text(message.get("content"), f"choices[{i}].message.content"))
    usage = data.get("usage")
    details = usage.get("prompt_tokens_details") if isinstance(usage, Mapping) else None
    return Completion(
        texts=texts,
        tokens_in=reply.usage_count(usage, "prompt_tokens"),
        tokens_out=reply.usage_count(usage, "completion_tokens"),
        first_token_logprobs=first_token_logprobs(choices[0]),
        # OpenAI counts cache hits in prompt_tokens_details; litellm adds Anthropic's cache writes beside them.
        # Absent: no cache was used (0); present but unreadable: None, charged at the full input rate.
        tokens_cached=reply.usage_count(details, optional=("cached_tokens",)) if details is not None else 0,
        tokens_cache_written=(reply.usage_count(usage, optional=("cache_creation_input_tokens",))
                              if isinstance(usage, Mapping) else 0),
    )


def decode_reply(raw: bytes, source: str) -> Any:
    """The reply's JSON. orjson first (fast); Python's json where orjson refuses, since servers written in Python
    send NaN and Infinity, which it reads. A body neither can read is cut off: asking again usually works."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise TransientError(f"undecodable response from {source}: {raw[:200]!r}", billed=True) from exc


# -- transports --------------------------------------------------------------------------------------


class _Transport(Protocol):
    async def send(self, body: dict[str, Any]) -> tuple[Any, RateLimits | None]: ...

    async def aclose(self) -> None: ...


class _HttpTransport:
    """POSTs over one aiohttp session, opened on first use because it must belong to the running loop."""

    def __init__(self, base_url: str, api_key: str | None, timeout: float, concurrency: int,
                 basic: str | None = None) -> None:
        self._url = f"{base_url.rstrip('/')}/chat/completions"
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        if basic:
            self._headers["Authorization"] = basic
        self._timeout = timeout
        self._concurrency = concurrency
        self._session: Any = None

    def _open(self) -> Any:
        import aiohttp

        connector = aiohttp.TCPConnector(limit=self._concurrency, limit_per_host=self._concurrency)
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers=self._headers,
            timeout=aiohttp.ClientTimeout(total=self._timeout),
        )
        return self._session

    async def send(self, body: dict[str, Any]) -> tuple[Any, RateLimits | None]:
        import aiohttp

        session = self._session or self._open()
        try:
            async with session.post(self._url, data=orjson.dumps(body)) as response:
                raw = await response.read()
                status, headers = response.status, response.headers
        except TimeoutError as exc:  # aiohttp's timeouts derive from it
            raise TransientError(f"no answer from {self._url} within {self._timeout:g} s", billed=True) from exc
        except aiohttp.InvalidURL as exc:
            raise PermanentError(f"invalid API URL {self._url!r}") from exc
        except aiohttp.ClientError as exc:
            # Refused before the request left: not billed; dropped mid-reply: perhaps billed.
            billed = not isinstance(exc, aiohttp.ClientConnectorError)
            raise TransientError(f"{type(exc).__name__} talking to {self._url}: {exc}", billed=billed) from exc
        if status >= 400:
            raise error_for_status(status, error_message(raw), headers)
        return decode_reply(raw, self._url), rate_limits(headers)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class _SdkTransport:
    """The official SDK, retries off, returning the raw JSON so that the shared parser applies."""

    def __init__(self, base_url: str, api_key: str | None, timeout: float, concurrency: int,
                 basic: str | None = None) -> None:
        import httpx
        import openai

        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        self._client = openai.AsyncOpenAI(
            base_url=base_url,
            # The SDK refuses to start without a key; local servers (vLLM, Ollama) need none.
            api_key=api_key or "no-key",
            default_headers={"Authorization": basic} if basic else None,  # overrides the SDK's Bearer header
            max_retries=0,
            timeout=timeout,
            http_client=openai.DefaultAsyncHttpxClient(limits=limits, timeout=timeout),
        )

    async def send(self, body: dict[str, Any]) -> tuple[Any, RateLimits | None]:
        import openai

        fields = dict(body)
        model, messages = fields.pop("model"), fields.pop("messages")
        try:
            # extra_body carries the rest verbatim, so both transports put the same fields on the wire.
            raw = await self._client.chat.completions.with_raw_response.create(
                model=model, messages=messages, extra_body=fields
            )
        except openai.APIStatusError as exc:
            raise error_for_status(exc.status_code, sdk_error_message(exc), exc.response.headers) from exc
        except openai.APIConnectionError as exc:  # APITimeoutError included
            raise TransientError(f"{type(exc).__name__}: {exc}", billed=isinstance(exc, openai.APITimeoutError)) from exc
        return decode_reply(raw.content, "the server"), rate_limits(raw.headers)

    async def aclose(self) -> None:
        await self._client.close()


# -- the backend -------------------------------------------------------------------------------------


class OpenAIBackend(endpoint.HttpBackend):
    """A judge behind the OpenAI chat-completions API (or a compatible server at `api_base`)."""

    name = "openai"
    supports_logprobs = True
    options = (*endpoint.CONNECTION_OPTIONS, "transport")

    def connect(self, connection: endpoint.Connection, *, transport: str = "http") -> None:
        if transport not in TRANSPORTS:
            raise PrefgenError(f"unknown transport {transport!r}; choose one of {', '.join(TRANSPORTS)}")
        self.transport = transport
        # aiohttp's total timeout ends a call and is reported as a billed TransientError, as judge.core would.
        self.times_out = transport == "http"
        # The same environment variables as the SDK, so both transports reach the same place.
        base_url = connection.api_base or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        key = connection.api_key or os.environ.get("OPENAI_API_KEY")
        if not key and base_url.rstrip("/") == DEFAULT_BASE_URL.rstrip("/") and "@" not in base_url:
            raise endpoint.no_key(f"openai:{self.model}", "OPENAI_API_KEY")
        base_url, key, credentials = connection.resolve(base_url, key)
        basic = endpoint.basic_auth(credentials) if credentials else None
        transport_class = _HttpTransport if transport == "http" else _SdkTransport
        self._transport: _Transport = transport_class(base_url, key, connection.timeout, connection.concurrency,
                                                      basic)
        self._where = (base_url, key, basic, connection.timeout)

    def sdk_client(self, max_retries: int = 3) -> Any:
        """The official SDK's client at the same place with the same key (the Batch API: `label --batch`)."""
        import openai

        base_url, key, basic, timeout = self._where
        return openai.AsyncOpenAI(base_url=base_url, api_key=key or "no-key", max_retries=max_retries,
                                  timeout=timeout, default_headers={"Authorization": basic} if basic else None)

    async def complete(self, messages: list[dict[str, str]], params: SamplingParams) -> Completion:
        data, limits = await self._transport.send(build_request(self.model, messages, params))
        completion = parse_chat_completion(data)
        completion.limits = limits
        return completion

    async def aclose(self) -> None:
        await self._transport.aclose()
