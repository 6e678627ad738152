"""prefgen: RLAIF preference labelling, a DuckDB store of every judgement, and TRL reward models.

The Python API is one call per command and the command's config model, on this package:

    import prefgen

    prefgen.label(constitution="constitution.yaml", pairs="pairs.jsonl", judge="openai:gpt-4o-mini",
                  db="prefs.duckdb")
    prefgen.import_human("prefs.duckdb", "human.jsonl", fmt="pairwise")
    prefgen.split("prefs.duckdb", heldout=0.3)
    prefgen.mix("prefs.duckdb", prefgen.MixConfig(name="m1"), auto=True)
    prefgen.train("prefs.duckdb", "m1", out_dir="rm-m1")
    prefgen.evaluate("rm-m1", db="prefs.duckdb")

Each name is loaded on first use (PEP 562), so `import prefgen` (and `prefgen --help`) loads none of the
libraries the calls need. The calls are `prefgen.api`'s, the configs `prefgen.pipelines.configs`' and
`prefgen.train.config`'s.
"""

from __future__ import annotations

import importlib
import types
from typing import Any

import prefgen.train as _train_package  # its __init__ is empty: cheap

__version__ = "0.1.0"

_CALLS = ("label", "ingest", "import_human", "split", "agreement", "route", "mix", "export", "train", "evaluate",
          "score", "stats", "report")
_CONFIGS = {name: "prefgen.pipelines.configs" for name in (
    "LabelConfig", "ImportConfig", "SplitConfig", "AgreementConfig", "RouteConfig", "RouteWeights", "MixConfig",
    "AutoMixConfig", "ExportConfig", "EvalConfig", "ScoreConfig")} | {"TrainConfig": "prefgen.train.config"}
_LAZY = {**{name: "prefgen.api" for name in _CALLS}, **_CONFIGS, "PrefgenError": "prefgen.errors"}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'prefgen' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # found directly from now on
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


class _TrainPackage(types.ModuleType):
    """`prefgen.train` is the package of the reward-model code (`prefgen.train.config`, `.trainer`...) and, called,
    the `train` command: a submodule is set as an attribute of its parent when imported, so a plain function of
    that name could not stay `prefgen.train`."""

    def __call__(self, *args: Any, **options: Any) -> Any:
        from prefgen.api import train

        return train(*args, **options)


_train_package.__class__ = _TrainPackage
_train_package.__doc__ = _train_package.__doc__ or _TrainPackage.__doc__
