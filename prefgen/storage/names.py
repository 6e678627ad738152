"""The one way prefgen puts a name into SQL text.

Names come from files others write (a macro a store carries, the TABLE of `FILE.duckdb:TABLE`): a name is
data, and pasted into SQL unquoted, or with its quotes stripped, it can end the statement and start another
(`x"; DROP TABLE judgements; --`). `quote_name` doubles the double quotes inside, which is how SQL writes a
quote in a quoted identifier; DuckDB takes every other character as it is, semicolons and NULs included.
"""

from __future__ import annotations


def quote_name(*parts: str) -> str:
    """`parts` as one quoted, dot-separated SQL identifier: quote_name("main", 'a"b') == '"main"."a""b"'."""
    if not parts:
        raise ValueError("quote_name needs at least one part")
    return ".".join('"' + str(part).replace('"', '""') + '"' for part in parts)
