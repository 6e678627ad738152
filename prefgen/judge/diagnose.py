"""Why judge calls failed, in words a user can act on.

A stored judge error keeps the provider's own message (`judge.http_errors`). Some failures are the same for
every call of a run and no retry mends them: a refused key, a wrong URL, a server that is not there. When the
whole first batch of a run fails that way the label pipeline stops early, and this module says what to check
for the backend in use: which variable holds the key, and the form of the base URL it expects.
"""

from __future__ import annotations

import re

AUTH = "auth"
NOT_FOUND = "not_found"
CONNECTION = "connection"
CREDENTIALS = "credentials"

_KINDS = (
    # litellm raises its "Missing credentials" before any request, wrapped as a 500.
    (CREDENTIALS, re.compile(r"Missing credentials|api_key client option must be set", re.IGNORECASE)),
    (AUTH, re.compile(r"HTTP 40[13]\b|AuthenticationError|PermissionDeniedError")),
    (NOT_FOUND, re.compile(r"HTTP 404\b|NotFoundError")),
    (CONNECTION, re.compile(r"ClientConnectorError|APIConnectionError|Connection error|Cannot connect|"
                            r"Connection refused|Name or service not known|nodename nor servname")),
)

# Where each backend reads its key, and the form of base URL it expects (the client appends the rest).
_KEY_VARIABLES = {
    "openai": "--api-key, PREFGEN_API_KEY or OPENAI_API_KEY",
    "anthropic": "--api-key, PREFGEN_API_KEY, ANTHROPIC_API_KEY or ANTHROPIC_AUTH_TOKEN",
}
_URL_FORMS = {
    "openai": "the base URL ends in /v1 (e.g. http://127.0.0.1:8000/v1): /chat/completions is appended to it",
    "anthropic": "the base URL has no /v1 (e.g. https://api.anthropic.com): the SDK appends /v1/messages",
}
# litellm providers that speak the Anthropic protocol; the others take an OpenAI-style base URL.
_ANTHROPIC_LIKE = {"anthropic"}


def failure_kind(error: str | None) -> str | None:
    """AUTH, NOT_FOUND, CONNECTION or CREDENTIALS for a failure no retry mends; None for any other."""
    for kind, pattern in _KINDS:
        if error and pattern.search(error):
            return kind
    return None


def what_to_check(kind: str, backend: str, *, provider: str | None = None, api_base: str | None = None) -> str:
    """One sentence for the user: what to check for `kind` of failure with this backend."""
    protocol = backend
    if backend == "litellm":
        protocol = "anthropic" if provider in _ANTHROPIC_LIKE else "openai"
    key = (f"--api-key or {provider.upper()}_API_KEY" if backend == "litellm" and provider
           else _KEY_VARIABLES.get(backend, "--api-key or PREFGEN_API_KEY"))
    where = f" ({api_base})" if api_base else ""
    if kind == CREDENTIALS:
        return f"no API key reached the provider: set {key}"
    if kind == AUTH:
        return f"the server refused the key: check {key}, and that the key is for this server{where}"
    if kind == NOT_FOUND:
        return (f"the server has no such endpoint or model: check --api-base{where}, "
                f"{_URL_FORMS.get(protocol, _URL_FORMS['openai'])}, and the model name")
    return (f"no connection to the server{where}: is it running and reachable? Check --api-base "
            "(or OPENAI_BASE_URL for openai:)")
