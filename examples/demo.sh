#!/usr/bin/env bash
# The demo: label the example pairs with the offline local judge, show the stats, then blend the AI labels
# with the example human labels, train the default reward model briefly on CPU and report held-out agreement.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${PREFGEN_DEMO_OUT:-demo-out}"
PREFGEN="${PREFGEN:-.venv/bin/prefgen}"
mkdir -p "$OUT"
DB="$OUT/demo.duckdb"

echo "== 1. label 50 example pairs with the local SmolLM2-135M judge, in both orders =="
"$PREFGEN" label --constitution examples/constitution.yaml --pairs examples/pairs.jsonl --judge local --db "$DB"

echo "== 2. what the store says =="
"$PREFGEN" stats --db "$DB"
"$PREFGEN" sql "SELECT principle_id, judgements, round(first_slot_share, 3) AS first_slot_share FROM position_bias" --db "$DB"
