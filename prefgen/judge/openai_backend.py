"""OpenAI chat completions (and every server that speaks them: vLLM, llama.cpp, Ollama, proxies).

One request builder and one response parser, two transports. Judging is thousands of tiny calls, and the
official SDK spends several times more CPU per call than the call needs: against the loopback judge at
100 ms latency, 64 in flight, 2 cores, the SDK made ~70 calls/s where bare aiohttp and the default
transport here both made ~580. So `transport="http"` posts the wire format over one shared aiohttp session,
and `transport="sdk"` goes through `openai.AsyncOpenAI` for those who want the SDK's own HTTP stack. Both
put the same fields on the wire and give the same `Completion`.

Nothing here retries: the SDK's own retries are off, and `judge.core` retries `TransientError` in one place.
The status mapping and Retry-After parsing are shared with the other HTTP backends.
"""

from __future__ import annotations

import email.utils
import os
import time
from collections.abc import Mapping
from typing import Any, Protocol

import orjson

from prefgen.errors import PrefgenError
from prefgen.judge.base import Completion, PermanentError, SamplingParams, TransientError

DEFAULT_BASE_URL = "https://api.openai.com/v1"
TRANSPORTS = ("http", "sdk")

# 408 and 409 are what the provider SDKs themselves treat as retryable among the 4xx, beside 429.
_RETRYABLE_4XX = frozenset({408, 409, 429})


# -- errors shared by the HTTP backends --------------------------------------------------------------


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from `retry-after-ms` or `Retry-After` (seconds or an HTTP date); None if absent."""
    if not headers:
        return None
    lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    if "retry-after-ms" in lowered:
        try:
            return max(0.0, float(lowered["retry-after-ms"]) / 1000)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def error_for_status(
    status: int, message: str, headers: Mapping[str, str] | None = None
) -> TransientError | PermanentError:
    """429, 408, 409 and 5xx are worth retrying (with the server's Retry-After); other 4xx are not."""
    if status in _RETRYABLE_4XX or status >= 500:
        return TransientError(f"HTTP {status}: {message}", retry_after=retry_after_seconds(headers))
    return PermanentError(f"HTTP {status}: {message}")


def error_message(raw: bytes) -> str:
    """The server's own words: `error.message` of a JSON error body, else the start of the body."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw[:500].decode("utf-8", "replace").strip() or "(empty body)"
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    if isinstance(error, str):
        return error
    return raw[:500].decode("utf-8", "replace")


def sdk_error_message(exc: Exception) -> str:
    """The server's message from an SDK status error, whose body is the error object or the whole reply."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        body = body["error"]
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return str(getattr(exc, "message", exc))


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
    """{token: logprob} over the first content token's alternatives, the chosen token included."""
    logprobs = choice.get("logprobs")
    content = logprobs.get("content") if isinstance(logprobs, Mapping) else None
    if not content:
        return None
    first = content[0]
    found = {top["token"]: float(top["logprob"]) for top in first.get("top_logprobs") or ()}
    found.setdefault(first["token"], float(first["logprob"]))
    return found


def parse_chat_completion(data: Mapping[str, Any]) -> Completion:
    """A chat.completion JSON object (as a dict) to a `Completion`; logprobs come from the first choice."""
    choices = data.get("choices") if isinstance(data, Mapping) else None
    if not choices:
        raise PermanentError(f"the response has no choices; is this a chat-completions endpoint? got {data!r:.300}")
    texts = [(choice.get("message") or {}).get("content") or "" for choice in choices]
    usage = data.get("usage") or {}
    return Completion(
        texts=texts,
        tokens_in=int(usage.get("prompt_tokens") or 0),
        tokens_out=int(usage.get("completion_tokens") or 0),
        first_token_logprobs=first_token_logprobs(choices[0]),
    )


# -- transports --------------------------------------------------------------------------------------


class _Transport(Protocol):
    async def send(self, body: dict[str, Any]) -> dict[str, Any]: ...

    async def aclose(self) -> None: ...


class _HttpTransport:
    """POSTs over one aiohttp session, opened on first use because it must belong to the running loop."""

    def __init__(self, base_url: str, api_key: str | None, timeout: float, concurrency: int) -> None:
        self._url = f"{base_url.rstrip('/')}/chat/completions"
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
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

    async def send(self, body: dict[str, Any]) -> dict[str, Any]:
        import aiohttp

        session = self._session or self._open()
        try:
            async with session.post(self._url, data=orjson.dumps(body)) as response:
                raw = await response.read()
                status, headers = response.status, response.headers
        except TimeoutError as exc:  # aiohttp's timeouts derive from it
            raise TransientError(f"no answer from {self._url} within {self._timeout:g} s") from exc
        except aiohttp.InvalidURL as exc:
            raise PermanentError(f"invalid API URL {self._url!r}") from exc
        except aiohttp.ClientError as exc:
            raise TransientError(f"{type(exc).__name__} talking to {self._url}: {exc}") from exc
        if status >= 400:
            raise error_for_status(status, error_message(raw), headers)
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:  # a cut-off body: asking again usually works
            raise TransientError(f"undecodable response from {self._url}: {raw[:200]!r}") from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class _SdkTransport:
    """The official SDK, retries off, returning the raw JSON so that the shared parser applies."""

    def __init__(self, base_url: str, api_key: str | None, timeout: float, concurrency: int) -> None:
        import httpx
        import openai

        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        self._client = openai.AsyncOpenAI(
            base_url=base_url,
            # The SDK refuses to start without a key; local servers (vLLM, Ollama) need none.
            api_key=api_key or "no-key",
            max_retries=0,
            timeout=timeout,
            http_client=openai.DefaultAsyncHttpxClient(limits=limits, timeout=timeout),
        )

    async def send(self, body: dict[str, Any]) -> dict[str, Any]:
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
            raise TransientError(f"{type(exc).__name__}: {exc}") from exc
        try:
            return orjson.loads(raw.content)
        except orjson.JSONDecodeError as exc:
            raise TransientError(f"undecodable response: {raw.content[:200]!r}") from exc

    async def aclose(self) -> None:
        await self._client.close()


# -- the backend -------------------------------------------------------------------------------------


class OpenAIBackend:
    """A judge behind the OpenAI chat-completions API (or a compatible server at `api_base`)."""

    name = "openai"
    supports_logprobs = True

    def __init__(
        self,
        model: str,
        *,
        api_base: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        concurrency: int = 64,
        transport: str = "http",
    ) -> None:
        if transport not in TRANSPORTS:
            raise PrefgenError(f"unknown transport {transport!r}; choose one of {', '.join(TRANSPORTS)}")
        self.model = model
        self.transport = transport
        # The same environment variables as the SDK, so both transports reach the same place.
        base_url = api_base or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        key = api_key or os.environ.get("OPENAI_API_KEY")
        transport_class = _HttpTransport if transport == "http" else _SdkTransport
        self._transport: _Transport = transport_class(base_url, key, timeout, concurrency)

    async def complete(self, messages: list[dict[str, str]], params: SamplingParams) -> Completion:
        data = await self._transport.send(build_request(self.model, messages, params))
        return parse_chat_completion(data)

    async def aclose(self) -> None:
        await self._transport.aclose()
