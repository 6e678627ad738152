"""Anthropic Messages API through the official SDK.

The Messages API differs from chat completions in three ways that matter here: the system prompt is a
separate field, there are no logprobs (confidence comes from verbalising or self-consistency), and there is
no `n`, so n samples are n concurrent calls whose texts and token counts are pooled.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from prefgen.judge import endpoint, reply
from prefgen.judge.base import Completion, PermanentError, SamplingParams, TransientError
from prefgen.judge.http_errors import error_for_status, sdk_error_message


def split_system(messages: list[dict[str, str]]) -> tuple[str | None, list[dict[str, str]]]:
    """Pull the system message(s) out of an OpenAI-style message list, as the Messages API wants."""
    system = [m["content"] for m in messages if m.get("role") == "system"]
    rest = [{"role": m["role"], "content": m["content"]} for m in messages if m.get("role") != "system"]
    return ("\n\n".join(system) if system else None), rest


# The shortest prefix each model caches (tokens; Anthropic's prompt-caching docs): below it `cache_control` is
# ignored and the request is charged as usual. First match of the model name wins; 1024 for the rest.
_MIN_CACHED_TOKENS = (("haiku-4", 4096), ("opus-4-5", 4096), ("opus-4-6", 4096), ("sonnet-4-6", 2048),
                      ("haiku", 2048))
_CHARS_PER_TOKEN = 4  # English runs at ~3.5 characters a Claude token: 4 errs towards leaving a prefix unmarked


def min_cached_tokens(model: str) -> int:
    name = model.lower()
    return next((tokens for part, tokens in _MIN_CACHED_TOKENS if part in name), 1024)


def system_field(model: str, system: str) -> str | list[dict[str, Any]]:
    """The system prompt, marked for the prompt cache where the model can cache it.

    The system message is the part every call of one principle shares (`judge.prompts`): a label job sends it
    2 x (pairs drawn for that principle) times within minutes, so the one cache write (1.25x input) is paid
    back by the first read (0.1x). Below the model's minimum the mark would be ignored, so it is left off and
    the request stays the plain string."""
    if len(system) // _CHARS_PER_TOKEN < min_cached_tokens(model):
        return system
    return [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}]


def message_params(model: str, messages: list[dict[str, str]], params: SamplingParams) -> dict[str, Any]:
    """The Messages API body of one sample of a rendered request (a batch request's `params` as they are)."""
    system, turns = split_system(messages)
    body: dict[str, Any] = {"model": model, "messages": turns, "max_tokens": params.max_tokens,
                            "temperature": params.temperature, **dict(params.extra)}
    if system is not None:
        body["system"] = system_field(model, system)
    return body


def parse_message(data: Any) -> Completion:
    """One Messages API reply to a one-text `Completion`; cached input tokens count as input.

    Total over JSON: text blocks are joined, other blocks (thinking, tool use) skipped; a reply with no content
    list raises `MalformedReply`; odd usage is read as far as it makes sense (see `judge.reply`).
    """
    if not isinstance(data, Mapping):
        raise reply.MalformedReply(f"the reply is not a JSON object: {reply.shape(data)}")
    content = data.get("content")
    if content is None:
        raise reply.MalformedReply(f"the reply has no content; is this a Messages API endpoint? got "
                                   f"{reply.shape(data, 300)}")
    if not isinstance(content, (list, str)):
        raise reply.MalformedReply(f"the reply's content is not a list of blocks: {reply.shape(content)}")
    text = reply.content_text(content, "content")
    usage = data.get("usage")
    return Completion(
        texts=[text],
        tokens_in=reply.usage_count(usage, "input_tokens",
                                    optional=("cache_creation_input_tokens", "cache_read_input_tokens")),
        tokens_out=reply.usage_count(usage, "output_tokens"),
        # Absent cache counts are 0 (no cache was used); present but unreadable, None (charged at the full rate).
        tokens_cached=reply.usage_count(usage, optional=("cache_read_input_tokens",)),
        tokens_cache_written=reply.usage_count(usage, optional=("cache_creation_input_tokens",)),
    )


def _total(counts: Any) -> int | None:
    """The sum of the samples' token counts; None (unread, charged the bound) when any one is unread."""
    counts = list(counts)
    return None if any(c is None for c in counts) else sum(counts)


def merge(completions: list[Completion]) -> Completion:
    """n single-sample replies as one n-sample `Completion` (for APIs without `n`)."""
    costs = [c.cost for c in completions if c.cost is not None]
    return Completion(
        texts=[text for c in completions for text in c.texts],
        tokens_in=_total(c.tokens_in for c in completions),
        tokens_out=_total(c.tokens_out for c in completions),
        cost=sum(costs) if costs else None,
        tokens_cached=sum(c.tokens_cached or 0 for c in completions),
        tokens_cache_written=sum(c.tokens_cache_written or 0 for c in completions),
    )


async def sample_separately(call: Callable[[], Awaitable[Completion]], n: int) -> Completion:
    """n concurrent single-sample calls as one n-sample `Completion` (for APIs without `n`).

    A TaskGroup cancels the other calls as soon as one fails. Its ExceptionGroup is unwrapped, because the
    retry policy in `judge.core` looks for a plain TransientError / PermanentError; a permanent failure
    wins, since retrying the others would not help.
    """
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(call()) for _ in range(n)]
    except ExceptionGroup as failed:
        permanent = [e for e in failed.exceptions if isinstance(e, PermanentError)]
        raise (permanent or failed.exceptions)[0] from None
    return merge([task.result() for task in tasks])


def _api_key(api_key: str | None, api_base: str | None) -> str | None:
    """The key to send. None lets the SDK resolve its own credential sources (env, profiles) for the real API;
    a gateway at `api_base` may need no key, and without a placeholder the SDK would refuse to send at all."""
    key = api_key or os.environ.get("ANTHROPIC_API_KEY")
    if key is None and api_base is not None and not os.environ.get("ANTHROPIC_AUTH_TOKEN"):
        return "no-key"
    return key


class AnthropicBackend(endpoint.HttpBackend):
    """A judge behind the Anthropic Messages API. `concurrency` bounds the requests in flight."""

    name = "anthropic"
    supports_logprobs = False

    def connect(self, connection: endpoint.Connection) -> None:
        import anthropic

        api_base, key, headers = connection.api_base, _api_key(connection.api_key, connection.api_base), None
        if api_base is None and key is None and not os.environ.get("ANTHROPIC_AUTH_TOKEN"):
            raise endpoint.no_key(f"anthropic:{self.model}", "ANTHROPIC_API_KEY (or ANTHROPIC_AUTH_TOKEN)")
        if api_base is not None:
            raw_key = connection.api_key or os.environ.get("ANTHROPIC_API_KEY")
            api_base, key, credentials = connection.resolve(api_base, raw_key)
            key = key or "no-key"  # None would let the SDK read ANTHROPIC_API_KEY itself
            headers = {"Authorization": endpoint.basic_auth(credentials)} if credentials else None
        self._client = anthropic.AsyncAnthropic(
            base_url=api_base, api_key=key, max_retries=0, timeout=connection.timeout, default_headers=headers
        )
        self._slots = asyncio.Semaphore(connection.concurrency)

    def sdk_client(self, max_retries: int = 3) -> Any:
        """The same client with the SDK's own retries on (Message Batches: a few calls per batch)."""
        return self._client.with_options(max_retries=max_retries)

    async def complete(self, messages: list[dict[str, str]], params: SamplingParams) -> Completion:
        body = message_params(self.model, messages, params)
        if params.n == 1:
            return await self._one(body)
        return await sample_separately(lambda: self._one(body), params.n)

    async def _one(self, body: dict[str, Any]) -> Completion:
        import anthropic

        request = {key: body[key] for key in ("model", "messages", "max_tokens", "system") if key in body}
        # The 2.x SDK has no `temperature` argument any more; the API still takes the field.
        request["extra_body"] = {key: value for key, value in body.items() if key not in request}
        try:
            async with self._slots:
                message = await self._client.messages.create(**request)
        except anthropic.APIStatusError as exc:
            raise error_for_status(exc.status_code, sdk_error_message(exc), exc.response.headers) from exc
        except anthropic.APIConnectionError as exc:  # APITimeoutError included
            raise TransientError(f"{type(exc).__name__}: {exc}",
                                 billed=isinstance(exc, anthropic.APITimeoutError)) from exc
        # The raw-response API changed shape across SDK majors; the parsed model's dump did not. A reply that
        # is not a JSON object comes back from the SDK as that value itself, with nothing to dump.
        dump = getattr(message, "model_dump", None)
        return parse_message(dump() if callable(dump) else message)

    async def aclose(self) -> None:
        await self._client.close()
