#!/usr/bin/env bash
# The demo: label the example pairs with the offline local judge, show the stats, then blend the AI labels
# with the example human labels (validated, so a poor judge cannot hurt), train the default reward model on CPU
# and report held-out agreement.
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

echo "== 3. import the example human labels and hold 30% of their prompts out =="
"$PREFGEN" import-human examples/human.jsonl --format pairwise --db "$DB"
"$PREFGEN" split --db "$DB" --heldout 0.3 --seed 0

echo "== 4. how far the judge agrees with the humans (pairs labelled by both) =="
"$PREFGEN" agreement --db "$DB"

echo "== 5. let validation on the human train labels decide whether the AI labels enter the mix =="
# The tiny judge keeps no pair, so the protective path is taken: the mix comes out human-only, and says why.
"$PREFGEN" mix --db "$DB" --name demo --auto --seed 0 --max-length 128

echo "== 6. train the default reward model (SmolLM2-135M frozen, reward head trained; CPU) on the mix =="
"$PREFGEN" train --db "$DB" --mix demo --out "$OUT/rm-demo" --max-length 128

echo "== 7. held-out agreement with the human labels =="
"$PREFGEN" eval --model "$OUT/rm-demo" --db "$DB"
echo "model card: $OUT/rm-demo/README.md"
