"""What a format is: a class with a `name`, a `detect` that recognises one of its rows, and a `read` that turns
a row into votes. Defining a subclass with a `name` registers it in `FORMATS`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import orjson

SINGLE = "label"  # annotator name of the one label in single-label formats


@dataclass(frozen=True, slots=True)
class Votes:
    """One row of a file format: the prompt, the two responses in the file's order, and votes over (first,
    second)."""

    prompt: str | list[dict[str, str]]
    first: str
    second: str
    votes: dict[str, str]  # annotator -> a (first) / b (second) / tie
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RoutedVotes:
    """One row of an annotation tool's export of a `prefgen route` batch: the pair it shows (a pair of the store,
    by id), the order its responses were shown in ("ab": response_a as Response 1), and the votes in that order
    (empty while nobody has labelled it)."""

    pair_id: Any
    shown: Any
    votes: dict[str, str]


FORMATS: dict[str, ImportFormat] = {}


class ImportFormat:
    """A format human labels come in, whose rows hold the pairs themselves (prompt and two responses).

    Subclasses declare `name` (the `--format` value), `help` (one line for `--help`), `detect` and `read`;
    defining one registers it, and every `--format` choice and config type follows the registry.
    """

    name: ClassVar[str]
    help: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:  # an abstract kind of format, not a format
            return
        if cls.name in FORMATS:
            raise TypeError(f"two import formats are named {cls.name!r}: {type(FORMATS[cls.name]).__name__} and "
                            f"{cls.__name__}")
        FORMATS[cls.name] = cls()

    def detect(self, row: Mapping[str, Any]) -> bool:
        """True when `row` (the first row of a file) is in this format and in no other."""
        raise NotImplementedError

    def read(self, row: Mapping[str, Any], path: str, line: int) -> Votes:
        """The votes of one row; `InputError` naming `path`, `line` and the field for a row it cannot read."""
        raise NotImplementedError


class ToolFormat(ImportFormat):
    """An annotation tool's format: `prefgen route` writes a batch of the store's pairs in it, and the tool's
    export of that batch comes back through `import-human`; its rows name pairs rather than hold them.
    `batch_help` says what `write_batch` writes (for `route --format`)."""

    batch_help: ClassVar[str]

    def read(self, row: Mapping[str, Any], path: str, line: int) -> RoutedVotes:  # type: ignore[override]
        raise NotImplementedError

    def write_batch(self, out: Path, items: Sequence[dict[str, Any]]) -> list[Path]:
        """Write routed pairs (`prefgen.pipelines.mixing.route`: pair_id, prompt, is_chat, response_a,
        response_b, shown, batch_id) for the tool; returns the files written."""
        raise NotImplementedError


def prompt_text(prompt: str, is_chat: bool) -> str:
    """What the annotator reads: the text, or a chat's turns as 'role: content' paragraphs."""
    if not is_chat:
        return prompt
    return "\n\n".join(f"{m['role']}: {m['content']}" for m in orjson.loads(prompt))


def shown_fields(item: Mapping[str, Any]) -> dict[str, str]:
    """prompt, response_1, response_2 of one routed pair, in the order its annotators see them."""
    first, second = ("response_a", "response_b") if item["shown"] == "ab" else ("response_b", "response_a")
    return {"prompt": prompt_text(item["prompt"], item["is_chat"]), "response_1": item[first],
            "response_2": item[second]}


def write_json(out: Path, data: Any) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
