"""Provider batch jobs: many judge calls handed over at once, answered within 24 hours at half the price.

Two wire protocols, each through its provider's SDK:
- OpenAI (and litellm's OpenAI-format batches): the requests as a JSONL file (`files.create`, purpose "batch"),
  then `batches.create` on it; `batches.retrieve` polls; the answers (and the failed requests) come back as
  JSONL output and error files. Our key travels in the batch's metadata, so a batch whose id never reached the
  store can be found again.
- Anthropic Message Batches: the requests inline (`messages.batches.create`), `retrieve` polls, `results`
  streams one JSON line per request. The Messages API has no `n`: n samples are n requests (`HASH_k`),
  merged back into one answer.

Each request's `custom_id` is the call's request hash, so an answer lands in the store under the same key
whichever way it was asked. Nothing here knows about the store; `pipelines.labelling.batch` drives it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from prefgen.judge import reply
from prefgen.judge.anthropic_backend import merge, message_params, parse_message
from prefgen.judge.base import Backend, Completion, SamplingParams
from prefgen.judge.openai_backend import build_request, decode_reply, parse_chat_completion

# OpenAI's terminal batch states; Anthropic's is processing_status "ended".
_OPENAI_ENDED = frozenset({"completed", "expired", "failed", "cancelled"})
EXPIRED = ("expired: the provider's batch window closed before this request ran (not charged); it is asked "
           "again next run")


@dataclass(frozen=True)
class BatchState:
    ended: bool  # the provider will answer nothing more: collect the results
    provider_status: str
    total: int
    completed: int  # answered so far (Anthropic counts only once the batch ends)
    failed: int
    error: str | None = None  # why the batch failed as a whole


@dataclass(frozen=True)
class BatchAnswer:
    """The outcome of one request: a completion, or the reason it has none (stored as a judge error)."""

    custom_id: str
    completion: Completion | None
    error: str | None = None


def batch_client_for(backend: Backend) -> BatchClient | None:
    """The batch API of a backend, or None where it has none here (a local model, a fleet of servers, a litellm
    provider not sent OpenAI-format batches). A third-party backend may offer one as `batch_client()`."""
    name = getattr(backend, "name", None)
    if name == "openai" and hasattr(backend, "sdk_client"):
        return OpenAIBatches(backend.model, backend.sdk_client())
    if name == "anthropic" and hasattr(backend, "sdk_client"):
        return AnthropicBatches(backend.model, backend.sdk_client())
    if name == "litellm" and hasattr(backend, "batch_settings"):
        found = backend.batch_settings()
        return LiteLLMBatches(backend.model, *found) if found is not None else None
    make = getattr(backend, "batch_client", None)
    return make() if callable(make) else None


class BatchClient(Protocol):
    """What `label --batch` needs of a provider. `requests`: (custom_id, rendered messages)."""

    name: str
    max_requests: int  # the provider's limit on requests per batch

    async def submit(self, key: str, requests: list[tuple[str, list[dict[str, str]]]],
                     params: SamplingParams) -> str: ...

    async def find(self, key: str, calls: int, samples: int, since: float, known: set[str]) -> str | None: ...

    async def state(self, batch_id: str) -> BatchState: ...

    def answers(self, batch_id: str) -> AsyncIterator[BatchAnswer]: ...

    async def aclose(self) -> None: ...


def _jsonl(lines: Iterable[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(line) + b"\n" for line in lines)


def _error_text(error: Any) -> str:
    """An error object of either protocol ({message, code/type} or {error: {...}}) as one line."""
    if isinstance(error, Mapping) and isinstance(error.get("error"), Mapping):
        error = error["error"]
    if isinstance(error, Mapping):
        kind = error.get("code") or error.get("type") or "error"
        return f"{kind}: {str(error.get('message') or '')[:500]}".rstrip(": ")
    return reply.shape(error)


# -- OpenAI ------------------------------------------------------------------------------------------


class OpenAIBatches:
    """OpenAI's Batch API through the official SDK (its own retries on: these are a few calls per batch)."""

    name = "openai"
    max_requests = 50_000
    endpoint = "/v1/chat/completions"

    def __init__(self, model: str, client: Any) -> None:
        self.model = model
        self._client = client

    # The five provider operations; litellm's batches override them.
    async def _upload(self, name: str, data: bytes) -> str:
        return (await self._client.files.create(file=(name, data, "application/jsonl"), purpose="batch")).id

    async def _create(self, file_id: str, metadata: dict[str, str]) -> Any:
        return await self._client.batches.create(input_file_id=file_id, endpoint=self.endpoint,
                                                 completion_window="24h", metadata=metadata)

    async def _retrieve(self, batch_id: str) -> Any:
        return await self._client.batches.retrieve(batch_id)

    async def _content(self, file_id: str) -> bytes:
        return (await self._client.files.content(file_id)).content

    async def _recent(self) -> AsyncIterator[Any]:
        async for batch in self._client.batches.list(limit=100):
            yield batch

    def _body(self, messages: list[dict[str, str]], params: SamplingParams) -> dict[str, Any]:
        return build_request(self.model, messages, params)

    async def submit(self, key: str, requests: list[tuple[str, list[dict[str, str]]]],
                     params: SamplingParams) -> str:
        lines = ({"custom_id": custom_id, "method": "POST", "url": self.endpoint,
                  "body": self._body(messages, params)} for custom_id, messages in requests)
        file_id = await self._upload(f"prefgen-{key}.jsonl", _jsonl(lines))
        return (await self._create(file_id, {"prefgen_batch": key})).id

    async def find(self, key: str, calls: int, samples: int, since: float, known: set[str]) -> str | None:
        """The batch created under our key (its metadata), among the newest few hundred."""
        seen = 0
        async for batch in self._recent():
            if (getattr(batch, "metadata", None) or {}).get("prefgen_batch") == key:
                return batch.id
            seen += 1
            if seen >= 500 or (getattr(batch, "created_at", 0) or 0) < since - 3600:
                return None
        return None

    async def state(self, batch_id: str) -> BatchState:
        batch = await self._retrieve(batch_id)
        counts = getattr(batch, "request_counts", None)
        errors = getattr(getattr(batch, "errors", None), "data", None) or []
        error = "; ".join(f"{e.code}: {e.message}" for e in errors[:3]) or None
        return BatchState(batch.status in _OPENAI_ENDED, batch.status, getattr(counts, "total", 0) or 0,
                          getattr(counts, "completed", 0) or 0, getattr(counts, "failed", 0) or 0, error)

    async def answers(self, batch_id: str) -> AsyncIterator[BatchAnswer]:
        batch = await self._retrieve(batch_id)
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            for raw in (await self._content(file_id)).splitlines():
                if raw.strip():
                    yield _openai_answer(decode_reply(raw, f"batch {batch_id}"))

    async def aclose(self) -> None:
        await self._client.close()


def _openai_answer(line: Any) -> BatchAnswer:
    custom_id = str(line.get("custom_id")) if isinstance(line, Mapping) else ""
    if not isinstance(line, Mapping):
        return BatchAnswer(custom_id, None, f"unreadable batch line: {reply.shape(line)}")
    response = line.get("response")
    if isinstance(response, Mapping) and response.get("status_code") == 200:
        try:
            return BatchAnswer(custom_id, parse_chat_completion(response.get("body")))
        except reply.MalformedReply as exc:
            return BatchAnswer(custom_id, None, f"MalformedReply: {exc}")
    if line.get("error"):
        error = line["error"]
        expired = isinstance(error, Mapping) and error.get("code") == "batch_expired"
        return BatchAnswer(custom_id, None, EXPIRED if expired else _error_text(error))
    status = response.get("status_code") if isinstance(response, Mapping) else None
    body = response.get("body") if isinstance(response, Mapping) else None
    return BatchAnswer(custom_id, None, f"HTTP {status}: {_error_text(body)}")


class LiteLLMBatches(OpenAIBatches):
    """litellm's OpenAI-format batch functions (`acreate_file`, `acreate_batch`, ...) for the providers litellm
    sends batches to that way (openai, hosted_vllm, litellm_proxy)."""

    name = "litellm"

    def __init__(self, model: str, litellm: Any, provider: str, settings: dict[str, Any]) -> None:
        super().__init__(model.split("/", 1)[-1], None)
        self._litellm = litellm
        self._settings = {"custom_llm_provider": provider, **settings}

    async def _upload(self, name: str, data: bytes) -> str:
        return (await self._litellm.acreate_file(file=(name, data, "application/jsonl"), purpose="batch",
                                                 **self._settings)).id

    async def _create(self, file_id: str, metadata: dict[str, str]) -> Any:
        return await self._litellm.acreate_batch(input_file_id=file_id, endpoint=self.endpoint,
                                                 completion_window="24h", metadata=metadata, **self._settings)

    async def _retrieve(self, batch_id: str) -> Any:
        return await self._litellm.aretrieve_batch(batch_id=batch_id, **self._settings)

    async def _content(self, file_id: str) -> bytes:
        return (await self._litellm.afile_content(file_id=file_id, **self._settings)).content

    async def _recent(self) -> AsyncIterator[Any]:
        page = await self._litellm.alist_batches(limit=100, **self._settings)
        for batch in getattr(page, "data", None) or []:
            yield batch

    async def aclose(self) -> None:
        """litellm owns its HTTP clients."""


# -- Anthropic ---------------------------------------------------------------------------------------


class AnthropicBatches:
    """Anthropic's Message Batches through the official SDK."""

    name = "anthropic"
    max_requests = 100_000

    def __init__(self, model: str, client: Any) -> None:
        self.model = model
        self._client = client
        self._samples: dict[str, int] = {}  # batch id -> n (requests per call), for merging the answers

    async def submit(self, key: str, requests: list[tuple[str, list[dict[str, str]]]],
                     params: SamplingParams) -> str:
        n = max(params.n, 1)
        batch_requests = [
            {"custom_id": custom_id if n == 1 else f"{custom_id}_{k}",
             "params": message_params(self.model, messages, params)}
            for custom_id, messages in requests for k in range(n)
        ]
        batch = await self._client.messages.batches.create(requests=batch_requests)
        return batch.id

    async def find(self, key: str, calls: int, samples: int, since: float, known: set[str]) -> str | None:
        """No metadata travels with a Message Batch: the batch created after `since` (seconds since the epoch)
        with as many requests (`calls` x `samples`), that the store does not know yet, is ours."""
        async for batch in self._client.messages.batches.list(limit=100):
            created = batch.created_at.timestamp()
            if created < since - 60:
                return None
            counts = batch.request_counts
            total = counts.processing + counts.succeeded + counts.errored + counts.canceled + counts.expired
            if batch.id not in known and total == calls * max(samples, 1):
                return batch.id
        return None

    async def state(self, batch_id: str) -> BatchState:
        batch = await self._client.messages.batches.retrieve(batch_id)
        c = batch.request_counts
        total = c.processing + c.succeeded + c.errored + c.canceled + c.expired
        return BatchState(batch.processing_status == "ended", batch.processing_status, total, c.succeeded,
                          c.errored + c.canceled + c.expired)

    async def answers(self, batch_id: str) -> AsyncIterator[BatchAnswer]:
        """One answer per call: the n samples of a call (`HASH_k`) merged, failing if any of them failed."""
        samples: dict[str, list[BatchAnswer]] = {}
        async for item in await self._client.messages.batches.results(batch_id):
            answer = _anthropic_answer(item)
            base, _, k = answer.custom_id.rpartition("_")
            if base and k.isdigit():
                samples.setdefault(base, []).append(BatchAnswer(base, answer.completion, answer.error))
            else:
                yield answer
        for custom_id, parts in samples.items():
            failed = next((p.error for p in parts if p.completion is None), None)
            yield BatchAnswer(custom_id, None if failed else merge([p.completion for p in parts]), failed)

    async def aclose(self) -> None:
        """The client is the backend's (with its own retry setting): the backend closes it."""


def _anthropic_answer(item: Any) -> BatchAnswer:
    data = item.model_dump() if hasattr(item, "model_dump") else item
    custom_id = str(data.get("custom_id")) if isinstance(data, Mapping) else ""
    result = data.get("result") if isinstance(data, Mapping) else None
    kind = result.get("type") if isinstance(result, Mapping) else None
    if kind == "succeeded":
        try:
            return BatchAnswer(custom_id, parse_message(result.get("message")))
        except reply.MalformedReply as exc:
            return BatchAnswer(custom_id, None, f"MalformedReply: {exc}")
    if kind == "expired":
        return BatchAnswer(custom_id, None, EXPIRED)
    if kind == "canceled":
        return BatchAnswer(custom_id, None, "canceled: the batch was cancelled before this request ran; it is "
                                            "asked again next run")
    if kind == "errored":
        return BatchAnswer(custom_id, None, _error_text(result.get("error")))
    return BatchAnswer(custom_id, None, f"unreadable batch result: {reply.shape(result)}")

