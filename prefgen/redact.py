"""Credentials never reach the store, the logs or the screen: URLs lose their user:password part, and known
secret values are masked, wherever text that may carry them is stored or printed."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

MASK = "***"
# scheme://userinfo@ — userinfo up to the last '@' before the host (passwords may contain '@' or ':').
_URL_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^\s/?#]*)@")
# Keys passed in a query string (`?api-key=...`, `&token=...`), as some gateways take them.
_QUERY_SECRET = re.compile(
    r"(?P<name>[?&](?:api[-_]?key|key|token|access[-_]?token|auth|sig|signature|password|secret)=)[^&\s#]+",
    re.IGNORECASE,
)


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """`text` with URL credentials and the given secret values replaced by ***."""
    text = _URL_USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    text = _QUERY_SECRET.sub(lambda m: f"{m['name']}{MASK}", text)
    for secret in secrets:
        if secret and len(secret) >= 4:  # masking "a" would mangle the text and protect nothing
            text = text.replace(secret, MASK)
    return text


def redact_value(value: Any, secrets: Iterable[str | None] = ()) -> Any:
    """Every string inside a JSON-like value, redacted."""
    secrets = tuple(secrets)
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {k: redact_value(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_value(v, secrets) for v in value]
    return value


def split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """(the URL without user:password, (user, password) or None). An unparsable URL is returned as it is."""
    try:
        parts = urlsplit(url)
        username, password = parts.username, parts.password
        hostname, port = parts.hostname, parts.port
    except ValueError:
        return url, None
    if username is None and password is None:
        return url, None
    netloc = hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if port is not None:
        netloc += f":{port}"
    return urlunsplit(parts._replace(netloc=netloc)), (unquote(username or ""), unquote(password or ""))
