"""Judge specs: one string names a backend and a model (`openai:gpt-4o-mini`, `local`, `local:/path`).

Backends register by spec prefix in one table; third parties add theirs through the `prefgen.judges`
entry-point group (name = prefix, value = `module:Class`) without touching the core, as `llm` plugins do.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from prefgen.errors import PrefgenError
from prefgen.judge.base import Backend

BACKENDS: dict[str, str] = {
    "openai": "prefgen.judge.openai_backend:OpenAIBackend",
    "anthropic": "prefgen.judge.anthropic_backend:AnthropicBackend",
    "litellm": "prefgen.judge.litellm_backend:LiteLLMBackend",
    "local": "prefgen.judge.local:LocalBackend",
}


@dataclass(frozen=True, slots=True)
class JudgeSpec:
    backend: str
    model: str

    @property
    def text(self) -> str:
        return f"{self.backend}:{self.model}" if self.model else self.backend


def parse_spec(spec: str) -> JudgeSpec:
    backend, _, model = spec.partition(":")
    known = available_backends()
    if backend not in known:
        raise PrefgenError(
            f"--judge {spec!r}: unknown backend {backend!r}; use one of {', '.join(sorted(known))} "
            "(for example openai:gpt-4o-mini, litellm:anthropic/claude-3-5-haiku-latest, local)"
        )
    if not model and backend != "local":
        raise PrefgenError(f"--judge {spec!r}: name a model after the colon, e.g. {backend}:MODEL")
    return JudgeSpec(backend, model)


def available_backends() -> dict[str, str]:
    found = dict(BACKENDS)
    for ep in entry_points(group="prefgen.judges"):
        found.setdefault(ep.name, ep.value)
    return found


def make_backend(spec: JudgeSpec, **settings: Any) -> Backend:
    """Instantiate the backend class for `spec`; the module is imported only now (SDKs are heavy).

    `settings` are everything the caller could configure; the backend gets those its class declares in
    `options` (a plugin without the attribute gets those its constructor names).
    """
    target = available_backends()[spec.backend]
    module_name, _, class_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(spec.model, **{k: v for k, v in settings.items() if k in declared_options(cls)})


def backend_options(spec: JudgeSpec) -> tuple[str, ...]:
    """The settings the backend of `spec` takes (its class is imported, not instantiated)."""
    module_name, _, class_name = available_backends()[spec.backend].partition(":")
    return declared_options(getattr(importlib.import_module(module_name), class_name))


def declared_options(cls: type) -> tuple[str, ...]:
    declared = getattr(cls, "options", None)
    if declared is not None:
        return tuple(declared)
    parameters = inspect.signature(cls).parameters.values()
    return tuple(p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY)
