"""Content addressing: canonical JSON hashed with SHA-256, tagged with the algorithm.

The tag makes a later change of canonical form detectable (a new tag), the way simonw/llm tags its hashes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import orjson

HASH_TAG = "s1"  # sha256 over orjson with sorted keys; bump when the canonical form changes


def canonical_json(obj: Any) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)


def content_hash(obj: Any, length: int = 32) -> str:
    """A short, stable id for JSON-able content (truncated SHA-256: 128 bits is plenty for ids)."""
    digest = hashlib.sha256(canonical_json(obj)).hexdigest()[:length]
    return f"{HASH_TAG}-{digest}"


class ListHash:
    """`content_hash([*head, items])` fed the items a batch at a time: the same id, without the list in memory.
    Canonical JSON is compact, so the list's bytes are its items' bytes joined by commas."""

    def __init__(self, *head: Any) -> None:
        self._sha = hashlib.sha256(canonical_json(list(head))[:-1] + (b",[" if head else b"["))
        self._empty = True

    def update(self, items: Iterable[Any]) -> None:
        for item in items:
            self._sha.update(canonical_json(item) if self._empty else b"," + canonical_json(item))
            self._empty = False

    def hexdigest(self, length: int = 32) -> str:
        """The id `content_hash` gives the whole list."""
        final = self._sha.copy()
        final.update(b"]]")
        return f"{HASH_TAG}-{final.hexdigest()[:length]}"
