"""Any provider litellm knows (`openai/...`, `anthropic/...`, `ollama/...`, `hosted_vllm/...`, ...).

litellm answers in the OpenAI shape whatever the provider, so its reply goes through the same parser as the
OpenAI backend. Its own retries are off (`num_retries=0`, `max_retries=0`): `judge.core` retries in one place.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
from typing import Any

from prefgen.errors import PrefgenError
from prefgen.judge import endpoint
from prefgen.judge.anthropic_backend import sample_separately
from prefgen.judge.base import Completion, PermanentError, SamplingParams, TransientError
from prefgen.judge.diagnose import CREDENTIALS, failure_kind
from prefgen.judge.http_errors import error_for_status, retry_after_seconds
from prefgen.judge.openai_backend import parse_chat_completion

# Providers whose replies carry token logprobs; for the others the fields are not even sent.
LOGPROB_PROVIDERS = frozenset({"openai", "hosted_vllm"})
# Providers litellm sends OpenAI-format batches to (its acreate_file / acreate_batch); Azure, Vertex and Bedrock
# batches need cloud storage settings prefgen does not take.
BATCH_PROVIDERS = frozenset({"openai", "hosted_vllm", "litellm_proxy"})


def _import_litellm() -> Any:
    # Without this, `import litellm` fetches a price map from the internet and waits on its retries.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True
    return litellm


def _headers_of(exc: Exception) -> Any:
    """The provider's response headers on a litellm error, wherever this litellm version keeps them.

    litellm rebuilds `exc.response` without the provider's headers (so that a proxy cannot leak them); the
    originals, Retry-After included, are on `litellm_response_headers`.
    """
    for headers in (
        getattr(exc, "litellm_response_headers", None),
        getattr(exc, "headers", None),
        getattr(getattr(exc, "response", None), "headers", None),
    ):
        if headers:
            return headers
    return None


def map_litellm_error(exc: Exception) -> TransientError | PermanentError:
    """litellm's exceptions as TransientError / PermanentError, by status code where there is one.

    They all derive from the OpenAI SDK's: litellm.Timeout and litellm.APIConnectionError from
    openai.APIConnectionError, the rate-limit / unavailable / internal errors carry 429 / 503 / 500.
    """
    import openai

    if isinstance(exc, openai.APIConnectionError):
        return TransientError(f"{type(exc).__name__}: {_without_traceback(str(exc))}",
                              retry_after=retry_after_seconds(_headers_of(exc)),
                              billed=isinstance(exc, openai.APITimeoutError) or "Traceback" in str(exc))
    status = getattr(exc, "status_code", None)
    if failure_kind(str(exc)) == CREDENTIALS:
        # litellm wraps a missing key, found before any request, as a 500: no retry brings a key.
        return PermanentError(f"{type(exc).__name__}: {_without_traceback(str(exc))}")
    if isinstance(status, int) and status >= 400:
        message = str(getattr(exc, "message", exc))
        error = error_for_status(status, _without_traceback(message), _headers_of(exc))
        if isinstance(error, TransientError) and "Invalid response object" in message:
            error.billed = True  # the provider answered; litellm could not read the answer
        return error
    return PermanentError(f"{type(exc).__name__}: {_without_traceback(str(exc))}")


def _without_traceback(message: str) -> str:
    """litellm pastes a whole Python traceback into some messages (a reply it could not validate); keep the
    words before it and the exception it ends with, which say what was wrong."""
    head, marker, tail = message.partition("Traceback (most recent call last)")
    if not marker:
        return message
    found = re.findall(r"(\w+(?:Error|Exception): .*)", tail)
    cause = found[-1] if found else ""
    return f"{head.strip()} ({cause.strip()[:300]})" if cause else head.strip()


def _check_environment(litellm: Any, model: str, provider: str) -> None:
    """The provider's own API with none of the keys litellm would read for it: refused before any call."""
    try:
        found = litellm.validate_environment(model=model)
    except Exception:  # noqa: BLE001 - a provider litellm cannot check: its first calls will tell
        return
    # Only credentials: a missing OLLAMA_API_BASE, say, has a default (localhost).
    missing = [name for name in found.get("missing_keys") or [] if name.endswith(("_KEY", "_TOKEN"))]
    if not found.get("keys_in_environment", True) and missing:
        raise endpoint.no_key(f"litellm:{model}", " and ".join(missing))


class LiteLLMBackend(endpoint.HttpBackend):
    """A judge reached through `litellm.acompletion`. `concurrency` bounds the requests in flight."""

    name = "litellm"

    def connect(self, connection: endpoint.Connection) -> None:
        self._litellm = litellm = _import_litellm()
        model, api_base, api_key = self.model, connection.api_base, connection.api_key
        self.provider = _provider_of(litellm, model, api_base)
        self._headers: dict[str, str] = {}
        if api_base is not None:
            # litellm would read the provider's key from the environment itself: decide here whether it may go.
            env_key = os.environ.get(f"{self.provider.upper()}_API_KEY")
            api_base, key, credentials = connection.resolve(api_base, api_key or env_key)
            api_key = key or "no-key"
            if credentials:
                self._headers["Authorization"] = endpoint.basic_auth(credentials)
        elif not api_key:
            _check_environment(litellm, model, self.provider)
        self._api_base = api_base
        self._api_key = api_key
        self._timeout = connection.timeout
        self._slots = asyncio.Semaphore(connection.concurrency)
        self.supports_logprobs = self.provider in LOGPROB_PROVIDERS
        supported = litellm.get_supported_openai_params(model=model, custom_llm_provider=self.provider) or ()
        # Providers without `n` (Anthropic, Ollama) get n separate calls instead of an error.
        self._native_n = "n" in supported

    def batch_settings(self) -> tuple[Any, str, dict[str, Any]] | None:
        """(litellm, provider, connection settings) for litellm's OpenAI-format batches (files + batches), where
        litellm sends them that way; None elsewhere (litellm 1.110 creates no Anthropic batch:
        `anthropic:MODEL --batch` does)."""
        if self.provider not in BATCH_PROVIDERS:
            return None
        settings: dict[str, Any] = {"api_base": self._api_base, "api_key": self._api_key}
        if self._headers:
            settings["extra_headers"] = dict(self._headers)
        return self._litellm, self.provider, {k: v for k, v in settings.items() if v is not None}

    async def complete(self, messages: list[dict[str, str]], params: SamplingParams) -> Completion:
        if params.n == 1 or self._native_n:
            return await self._call(messages, params, params.n)
        return await sample_separately(lambda: self._call(messages, params, 1), params.n)

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
        if self._headers:
            request["extra_headers"] = dict(self._headers)
        return request

    async def _call(self, messages: list[dict[str, str]], params: SamplingParams, n: int) -> Completion:
        import openai

        try:
            async with self._slots:
                response = await self._litellm.acompletion(**self._request(messages, params, n))
        except openai.OpenAIError as exc:  # every litellm provider error derives from the OpenAI SDK's
            raise map_litellm_error(exc) from exc
        completion = parse_chat_completion(response.model_dump())
        completion.cost = _reported_cost(response)
        return completion

    async def aclose(self) -> None:
        """litellm keeps its HTTP clients in a module-level cache it owns; there is nothing of ours to close."""


def _provider_of(litellm: Any, model: str, api_base: str | None) -> str:
    try:
        _, provider, _, _ = litellm.get_llm_provider(model, api_base=api_base)
    except litellm.BadRequestError as exc:
        raise PrefgenError(
            f"litellm cannot tell the provider of model {model!r}; prefix it, e.g. openai/{model}, "
            f"anthropic/{model}, ollama/{model} or hosted_vllm/{model}"
        ) from exc
    return str(provider)


def _reported_cost(response: Any) -> float | None:
    hidden = getattr(response, "_hidden_params", None)
    cost = hidden.get("response_cost") if isinstance(hidden, dict) else None
    if isinstance(cost, bool) or not isinstance(cost, (int, float)) or not math.isfinite(cost) or cost < 0:
        return None  # no price, or a broken one: the configured price applies to the reported tokens
    return float(cost)
