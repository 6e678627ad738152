"""Any provider litellm knows (`openai/...`, `anthropic/...`, `ollama/...`, `hosted_vllm/...`, ...).

litellm answers in the OpenAI shape whatever the provider, so its reply goes through the same parser as the
OpenAI backend. Its own retries are off (`num_retries=0`, `max_retries=0`): `judge.core` retries in one place.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from prefgen.judge.anthropic_backend import merge
from prefgen.judge.base import Completion, PermanentError, SamplingParams, TransientError
from prefgen.judge.openai_backend import error_for_status, parse_chat_completion, retry_after_seconds

# Providers whose replies carry token logprobs; for the others the fields are not even sent.
LOGPROB_PROVIDERS = frozenset({"openai", "hosted_vllm"})


def _import_litellm() -> Any:
    # Without this, `import litellm` fetches a price map from the internet and waits on its retries.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True
    return litellm


def _headers_of(exc: Exception) -> Any:
    """Response headers of a litellm error: explicit `headers` first, else those of the wrapped response."""
    headers = getattr(exc, "headers", None)
    if headers:
        return headers
    response = getattr(exc, "response", None)
    return getattr(response, "headers", None)


def map_litellm_error(exc: Exception) -> Exception:
    """litellm's exceptions (subclasses of the OpenAI SDK's) as TransientError / PermanentError."""
    import openai

    litellm = _import_litellm()
    if isinstance(exc, (litellm.Timeout, litellm.APIConnectionError, openai.APIConnectionError)):
        return TransientError(f"{type(exc).__name__}: {exc}", retry_after=retry_after_seconds(_headers_of(exc)))
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and status >= 400:
        return error_for_status(status, str(getattr(exc, "message", exc)), _headers_of(exc))
    return PermanentError(f"{type(exc).__name__}: {exc}")


class LiteLLMBackend:
    """A judge reached through `litellm.acompletion`. `concurrency` bounds the requests in flight."""

    name = "litellm"

    def __init__(
        self,
        model: str,
        *,
        api_base: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        concurrency: int = 64,
    ) -> None:
        litellm = _import_litellm()
        self.model = model
        self._api_base = api_base
        self._api_key = api_key
        self._timeout = timeout
        self._slots = asyncio.Semaphore(concurrency)
        _, provider, _, _ = litellm.get_llm_provider(model, api_base=api_base)
        self.provider: str = provider
        self.supports_logprobs = provider in LOGPROB_PROVIDERS
        supported = litellm.get_supported_openai_params(model=model, custom_llm_provider=provider) or ()
        # Providers without `n` (Anthropic, Ollama) get n separate calls instead of an error.
        self._native_n = "n" in supported

    async def complete(self, messages: list[dict[str, str]], params: SamplingParams) -> Completion:
        if params.n == 1 or self._native_n:
            return await self._call(messages, params, params.n)
        async with asyncio.TaskGroup() as group:  # cancels the siblings as soon as one call fails
            tasks = [group.create_task(self._call(messages, params, 1)) for _ in range(params.n)]
        return merge([task.result() for task in tasks])

    def _request(self, messages: list[dict[str, str]], params: SamplingParams, n: int) -> dict[str, Any]:
        request: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "timeout": self._timeout,
            "num_retries": 0,
            "max_retries": 0,
            **dict(params.extra),
        }
        if n != 1:
            request["n"] = n
        if params.logprobs and self.supports_logprobs:
            request["logprobs"] = True
            request["top_logprobs"] = params.top_logprobs
        if self._api_base:
            request["api_base"] = self._api_base
        if self._api_key:
            request["api_key"] = self._api_key
        return request

    async def _call(self, messages: list[dict[str, str]], params: SamplingParams, n: int) -> Completion:
        import openai

        litellm = _import_litellm()
        try:
            async with self._slots:
                response = await litellm.acompletion(**self._request(messages, params, n))
        except openai.OpenAIError as exc:  # every litellm provider error derives from the OpenAI SDK's
            raise map_litellm_error(exc) from exc
        completion = parse_chat_completion(response.model_dump())
        completion.cost = _reported_cost(response)
        return completion

    async def aclose(self) -> None:
        """litellm keeps its HTTP clients in a module-level cache it owns; there is nothing of ours to close."""


def _reported_cost(response: Any) -> float | None:
    cost = (getattr(response, "_hidden_params", None) or {}).get("response_cost")
    return float(cost) if isinstance(cost, (int, float)) else None
