"""Loading a constitution file, with errors that point at the file, line and field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from prefgen.constitution.model import Constitution
from prefgen.errors import InputError, PrefgenError

Loc = tuple[str | int, ...]

# A constitution is a few kilobytes (thousands of principles are a few hundred): a file past this is not one.
MAX_BYTES = 1 << 20
# How deep mappings and lists may nest. A constitution needs four or five levels; the parsers recurse once per
# level (PyYAML's composer and Python's json raise RecursionError near 1,000) and PyYAML's scanner slows down
# with the square of the depth of `[[[...`, so the depth is counted first, by a pass that stops at the limit.
MAX_DEPTH = 32


def load_constitution(path: str | Path) -> Constitution:
    path = Path(path)
    text = _read_text(path)
    data = _parse(path, text)
    if _is_category_lists(data):
        data = _from_category_lists(path, data)
    try:
        return Constitution.model_validate(data)
    except ValidationError as exc:
        lines = _line_map(text)
        problems = [_render_error(path, err, lines) for err in exc.errors()]
        raise PrefgenError("\n".join(problems)) from None


def _read_text(path: Path) -> str:
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise InputError(path, f"{size:,} bytes is too large for a constitution (at most {MAX_BYTES:,})",
                             hint="a constitution holds principles; keep data out of it")
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise InputError(path, "no such file", hint="check the --constitution path") from None
    except UnicodeDecodeError as exc:
        raise InputError(path, f"not UTF-8 text (byte {exc.start})", hint="save the file as UTF-8") from None


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = value
    return seen


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (YAML would silently keep the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                hash(key)
            except TypeError:
                continue  # SafeLoader reports unhashable keys itself
            if key in seen:
                raise InputError(None, f"duplicate key {key!r} (first on line {seen[key]})",
                                 line=key_node.start_mark.line + 1, hint="keep one of them")
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _too_deep(path: Path, line: int | None) -> InputError:
    return InputError(path, f"mappings and lists nest more than {MAX_DEPTH} levels deep", line=line,
                      hint="a constitution needs a handful of levels; flatten it")


def _check_yaml_events(path: Path, text: str) -> None:
    """Refused before anything is built: anchors and aliases (an alias expands to a copy of what it names, and
    nine lines of nested aliases expand to gigabytes, the "billion laughs"; a constitution needs none), and
    nesting past MAX_DEPTH. The event stream is read only up to the first problem."""
    depth = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
                raise InputError(path, "YAML anchors and aliases (&name, *name) are not allowed in a constitution",
                                 line=event.start_mark.line + 1, hint="write each value out in full")
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    raise _too_deep(path, event.start_mark.line + 1)
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError:
        return  # reported by the loader with its own line


def _check_json_depth(path: Path, text: str) -> None:
    """Nesting past MAX_DEPTH refused in one pass over the characters, before json recurses into it."""
    depth, line, in_string, escaped = 0, 1, False, False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise _too_deep(path, line)
        elif char in "]}":
            depth -= 1
        if char == "\n":
            line += 1


def _parse(path: Path, text: str) -> Any:
    if path.suffix.lower() == ".json":
        _check_json_depth(path, text)
        try:
            data = json.loads(text, object_pairs_hook=_no_duplicate_keys)
        except json.JSONDecodeError as exc:
            raise InputError(path, f"invalid JSON: {exc.msg}", line=exc.lineno) from None
        except _DuplicateKey as exc:
            # JSON reads as YAML: the YAML loader finds the lines of both occurrences.
            try:
                yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
            except InputError as found:
                raise InputError(path, found.message, line=found.line, hint=found.hint) from None
            except yaml.YAMLError:
                pass
            raise InputError(path, f"duplicate key {exc.key!r}", hint="keep one of them") from None
    else:
        _check_yaml_events(path, text)
        try:
            data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
        except InputError as exc:
            exc.path = str(path)
            raise InputError(path, exc.message, line=exc.line, hint=exc.hint) from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            problem = getattr(exc, "problem", None) or str(exc)
            raise InputError(path, f"invalid YAML: {problem}", line=mark.line + 1 if mark else None) from None
    if not isinstance(data, dict):
        raise InputError(path, "expected a mapping with name, principles and sampling", line=1)
    return data


def _is_category_lists(data: dict[str, Any]) -> bool:
    """UltraFeedback-style files: {category: [principle text, ...]} with no other structure."""
    return "principles" not in data and bool(data) and all(
        isinstance(v, list) and v and all(isinstance(t, str) for t in v) for v in data.values()
    )


def _from_category_lists(path: Path, data: dict[str, list[str]]) -> dict[str, Any]:
    principles = [
        {"id": f"{category}-{i}", "text": text, "category": category}
        for category, texts in data.items()
        for i, text in enumerate(texts)
    ]
    return {"name": path.stem, "principles": principles}


def _line_map(text: str) -> dict[Loc, int]:
    """Line (1-based) of every key and list item, from YAML's node marks (JSON parses as YAML too)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)  # aliases were refused before: nothing expands here
    except yaml.YAMLError:
        return {}
    lines: dict[Loc, int] = {}

    def walk(node: yaml.Node, loc: Loc) -> None:
        lines[loc] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                lines[(*loc, key.value)] = key.start_mark.line + 1
                walk(value, (*loc, key.value))
                lines[(*loc, key.value)] = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, (*loc, i))

    if root is not None:
        walk(root, ())
    return lines


def _render_error(path: Path, err: dict[str, Any], lines: dict[Loc, int]) -> str:
    loc: Loc = tuple(err["loc"])
    line = None
    for cut in range(len(loc), -1, -1):  # the closest enclosing node that has a line
        if loc[:cut] in lines:
            line = lines[loc[:cut]]
            break
    field = _dotted(loc) or "constitution"
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        message = "unknown key: remove it or check its spelling"
    elif err["type"] == "missing":
        message = "required field is missing"
    elif "input" in err and not isinstance(err["input"], (dict, list)):
        message += f" (got {err['input']!r})"
    return InputError(path, message, line=line, field=field).render()


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
