"""The examples under each command's `--help`: what a new user types first, on the files `examples/` ships.

Kept apart from `cli.py` so the commands stay readable; `tests/test_cli_help.py` checks that every command has
examples and that every option they use is one the command takes.
"""

from __future__ import annotations

EXAMPLES: dict[str, tuple[str, ...]] = {
    "label": (
        "prefgen label -c examples/constitution.yaml -p examples/pairs.jsonl --judge local --db prefs.duckdb",
        "prefgen label -c examples/constitution.yaml -p examples/pairs.jsonl --judge openai:gpt-4o-mini "
        "--db prefs.duckdb --max-cost 5",
        "prefgen label -c examples/constitution.yaml -p examples/pairs.jsonl --judge openai:llama3 "
        "--api-base http://localhost:8000/v1 --price-in 0 --price-out 0 --max-cost 1 --db prefs.duckdb",
        "prefgen label -c examples/constitution.yaml -p examples/pairs.jsonl --judge anthropic:claude-3-5-haiku-latest "
        "--batch --db prefs.duckdb",
    ),
    "ingest": ("prefgen ingest shards/*.duckdb --db prefs.duckdb",),
    "sql": (
        "prefgen sql \"SELECT judge_spec, count(*) FROM judgements GROUP BY 1\" --db prefs.duckdb",
        "prefgen sql \"SELECT * FROM kept_pairs\" --db prefs.duckdb --format parquet --out kept.parquet",
    ),
    "stats": ("prefgen stats --db prefs.duckdb", "prefgen stats --db prefs.duckdb --json"),
    "import-human": (
        "prefgen import-human examples/human.jsonl --format pairwise --db prefs.duckdb",
        "prefgen import-human human_heldout.jsonl --format pairwise --split heldout --skip-bad --db prefs.duckdb",
    ),
    "split": ("prefgen split --heldout 0.3 --seed 0 --db prefs.duckdb",),
    "route": ("prefgen route --db prefs.duckdb --budget 100 --format label-studio --out batch.json",
              "prefgen route --db prefs.duckdb --budget 100 --cross-check --format argilla --out batch.json"),
    "agreement": ("prefgen agreement --db prefs.duckdb",),
    "mix": (
        "prefgen mix --name m1 --db prefs.duckdb",
        "prefgen mix --name m1 --auto --db prefs.duckdb",
        "prefgen mix --name m2 --human-ratio 0.5 --labels hard --db prefs.duckdb",
    ),
    "export": ("prefgen export --mix m1 --format hf --out mix-m1 --db prefs.duckdb",),
    "train": (
        "prefgen train --mix m1 --out rm-m1 --db prefs.duckdb",
        "prefgen train --mix m1 --out rm-m1-fast --base minilm --db prefs.duckdb",
    ),
    "eval": ("prefgen eval --model rm-m1 --db prefs.duckdb --split heldout",),
    "score": ("prefgen score --model rm-m1 --responses candidates.jsonl --out scores.jsonl",),
    "report": ("prefgen report --db prefs.duckdb --out report.html",),
    "show": ("prefgen show 3f2a9c --db prefs.duckdb", "prefgen show 3f2a9c --wire --db prefs.duckdb"),
}

DB_HINT = "Every --db defaults to $PREFGEN_DB when it is set (export PREFGEN_DB=prefs.duckdb)."


def epilog(command: str) -> str | None:
    """The `--help` epilog of `command`: its examples, one a paragraph (click keeps `\\b` blocks unwrapped)."""
    examples = EXAMPLES.get(command)
    if not examples:
        return None
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in examples) + f"\n\n{DB_HINT}"
