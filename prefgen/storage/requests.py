"""SQL for `prefgen show`: one judgement with everything its request was rendered from."""

from __future__ import annotations

import json
from typing import Any

from prefgen.errors import PrefgenError
from prefgen.hashing import HASH_TAG
from prefgen.storage.db import Store


def judgement_sources(store: Store, judgement_id: str) -> dict[str, Any]:
    """The judgement whose request hash is (or starts with) `judgement_id`, joined with its pair, principle,
    label job and constitution. A prefix must name one judgement."""
    prefix = judgement_id.strip().lower()
    if "-" not in prefix:  # the hex part alone, as tables and the README show it: the tag is implied
        prefix = f"{HASH_TAG}-{prefix}"
    if len(prefix.split("-", 1)[1]) < 6:
        raise PrefgenError(f"judgement id {judgement_id!r}: give at least 6 characters of its request_hash")
    rows = store.dicts(
        """SELECT j.request_hash, j.job_id, j.run_id, j.pair_id, j.principle_id, j.ordering, j.backend, j.model,
                  j.template_version, j.status, j.verdict, j.p_first, j.confidence_source, j.raw_text, j.error,
                  j.tokens_in, j.tokens_out, j.cost, j.latency_s, j.attempts, j.created_at,
                  p.prompt, p.is_chat, p.response_a, p.response_b, p.input_swapped, p.source_id,
                  pr.text AS principle_text,
                  lj.judge_spec, lj.sampling, lj.template,
                  c.body AS constitution
           FROM judgements j
           LEFT JOIN pairs p ON p.id = j.pair_id
           LEFT JOIN principles pr ON pr.constitution_id = j.constitution_id AND pr.principle_id = j.principle_id
           LEFT JOIN label_jobs lj ON lj.job_id = j.job_id
           LEFT JOIN constitutions c ON c.id = j.constitution_id
           WHERE starts_with(j.request_hash, ?)
           ORDER BY j.request_hash LIMIT 2""",
        [prefix],
    )
    if not rows:
        raise PrefgenError(f"{store.path}: no judgement whose request_hash starts with {prefix!r} "
                           "(see: prefgen sql \"SELECT request_hash FROM judgements\")")
    if len(rows) > 1:
        raise PrefgenError(f"judgement id {prefix!r} names more than one judgement: give more characters")
    row = rows[0]
    for key in ("sampling", "template", "constitution"):
        row[key] = json.loads(row[key]) if row[key] else None
    return row
