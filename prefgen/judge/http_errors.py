"""HTTP failures as TransientError / PermanentError: one home for every HTTP backend (openai, anthropic, litellm).

429, 408, 409 and 5xx are worth retrying, honouring the server's Retry-After; other 4xx are not. The server's
own message is kept, since that is what tells a user why a call failed.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Mapping

import orjson

from prefgen.judge.base import PermanentError, TransientError

# 408 and 409 are what the provider SDKs themselves treat as retryable among the 4xx, beside 429.
_RETRYABLE_4XX = frozenset({408, 409, 429})


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from `retry-after-ms` or `Retry-After` (seconds or an HTTP date); None if absent or odd."""
    if not headers:
        return None
    try:
        lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    except Exception:  # a header object of an unexpected shape: wait as if none were given
        return None
    if "retry-after-ms" in lowered:
        seconds = _finite(lowered["retry-after-ms"])
        if seconds is not None:
            return max(0.0, seconds / 1000)
    value = lowered.get("retry-after")
    if value is None:
        return None
    seconds = _finite(value)
    if seconds is not None:
        return max(0.0, seconds)
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, OverflowError, IndexError):
        return None


def _finite(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None  # "inf" / "nan" say nothing about when to come back


def error_for_status(
    status: int, message: str, headers: Mapping[str, str] | None = None
) -> TransientError | PermanentError:
    """429, 408, 409 and 5xx are worth retrying (with the server's Retry-After); other 4xx are not."""
    if status in _RETRYABLE_4XX or status >= 500:
        from prefgen.judge.ratelimit import rate_limits

        return TransientError(f"HTTP {status}: {message}", retry_after=retry_after_seconds(headers),
                              throttled=status == 429, limits=rate_limits(headers))
    return PermanentError(f"HTTP {status}: {message}")


def error_message(raw: bytes) -> str:
    """The server's own words: `error.message` of a JSON error body, else the start of the body."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw[:500].decode("utf-8", "replace").strip() or "(empty body)"
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])[:500]
    if isinstance(error, str):
        return error[:500]
    return raw[:500].decode("utf-8", "replace")


def sdk_error_message(exc: Exception) -> str:
    """The server's message from an SDK status error, whose body is the error object or the whole reply."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        body = body["error"]
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])[:500]
    return str(getattr(exc, "message", exc))[:500]
