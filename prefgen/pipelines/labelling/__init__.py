"""`prefgen label`: judge every (pair, principle) in both orders, store every call, derive preferences.

`job` says what a job is (constitution, judge client, planned calls); `run` is a run's life on its store (lock,
run row, counts, summary); `sender` sends a chunk's calls and writes the answers; `local` (asyncio, one process)
and `ray` (Ray workers writing Parquet shards, merged by `ingest`) are the two engines that drive them.
"""

from __future__ import annotations

from prefgen.pipelines.configs import LabelConfig
from prefgen.pipelines.labelling.run import LabelSummary


def run_label(config: LabelConfig) -> LabelSummary:
    """Label with the engine the config names (`--engine`)."""
    if config.engine == "ray":
        from prefgen.pipelines.labelling.ray import run_label_ray

        return run_label_ray(config)
    from prefgen.pipelines.labelling.local import run_label as run_local

    return run_local(config)


__all__ = ["LabelConfig", "LabelSummary", "run_label"]
