"""Text from data made inert before it reaches a terminal.

Pairs, constitutions, judge replies, store files and column names are written by others. A terminal acts on the
control characters in what it is given: ESC [ 2 J clears the screen, OSC sequences set the window title or make
links, a carriage return overwrites the line, bidi overrides reorder what is shown. Every human-facing output
(tables, summaries, `show`, errors, log lines) passes its text through `inert`, which shows each such character
as an escape (`\\x1b`, `\\u202e`) instead: the reader sees that it was there, and the terminal does nothing.
Machine output (`--json`, `--format csv`, files) stays byte-exact; JSON escapes these characters itself.
"""

from __future__ import annotations

import re

# C0 controls but tab and newline, DEL, the C1 range (0x9b is a one-byte CSI on some terminals), and the
# bidi embedding, override and isolate marks.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_LAYOUT = re.compile("[\t\n]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match[0])
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def inert(text: object, *, one_line: bool = False) -> str:
    """`text` (made a string) with every control character shown as an escape, so that printing it cannot
    drive the terminal. Tabs and newlines are kept as layout unless `one_line`, where they are escaped too."""
    text = str(text)
    text = _CONTROL.sub(_escape, text)
    return _LAYOUT.sub(_escape, text) if one_line else text
