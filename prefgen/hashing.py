"""Content addressing: canonical JSON hashed with SHA-256, tagged with the algorithm.

The tag makes a later change of canonical form detectable (a new tag), the way simonw/llm tags its hashes.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

HASH_TAG = "s1"  # sha256 over orjson with sorted keys; bump when the canonical form changes


def canonical_json(obj: Any) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)


def content_hash(obj: Any, length: int = 32) -> str:
    """A short, stable id for JSON-able content (truncated SHA-256: 128 bits is plenty for ids)."""
    digest = hashlib.sha256(canonical_json(obj)).hexdigest()[:length]
    return f"{HASH_TAG}-{digest}"
