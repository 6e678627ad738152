"""The README, command for command: every shell command of its code blocks runs here, in the README's order, in
a temporary directory with a fresh store, on the shipped HH-RLHF harmless data, against the loopback judge on
127.0.0.1; the Python snippet of "5. From Python or a notebook" runs too, from a directory that is not the
checkout. Each command must exit 0, and a few leave something checked in the store.

Only what must be is substituted, and `SUBSTITUTE` (with `ADDED` and `ENV`) says what and why: the data files the
README names (the shipped files cut to their first rows, so that the walk takes a couple of minutes on 2 cores),
the servers it names, one example id, training options that keep it fast. What cannot run here (a GPU, a Ray
cluster, the install) is in `SKIP`, with the reason. Every command of the README is in `RUN` or `SKIP`: a
command the README gains fails this test until it is handled here, and so does an entry the README lost.
"""

from __future__ import annotations

import json
import re
import shlex
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from prefgen.cli import cli
from prefgen.storage.db import Store
from prefgen.train.config import default_base_path
from tests.loopback_server import Behaviour, LoopbackServer
from tests.test_route import label_studio_export

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
HH = REPO.parent / "shared" / "data" / "hh-rlhf-harmless"  # read from ../shared at run time, never copied in

ROWS = 60  # the first rows of each shipped file: every step gets data, and the walk takes a couple of minutes
# The shipped rows the README's `--skip-bad` is there for, added to the cut so that the commands meet them as a
# user does (found by prefgen: an empty response at pool.jsonl:480, 505 and 790; chosen and rejected transcripts
# that differ before the last Assistant turn at human_heldout.jsonl:162).
BAD_LINES = {"pool.jsonl": (480, 505, 790), "human_heldout.jsonl": (162,)}

# -- what is substituted, and why -------------------------------------------------------------------------------

# A word of a README command -> (its stand-in, made when first used, in the walk's directory; why).
SUBSTITUTE: dict[str, tuple[Callable[[Walk], str], str]] = {
    "examples/constitution.yaml": (lambda walk: str(REPO / "examples" / "constitution.yaml"),
                                   "the README runs from the checkout, the walk in a temporary directory"),
    "constitution.yaml": (lambda walk: str(REPO / "examples" / "constitution.yaml"),
                          "section 6 names your constitution: the example one stands in"),
    "pairs.jsonl": (lambda walk: str(pool_cut(walk)),
                    "your pairs: the shipped unlabelled HH pool, cut, its rows with an empty response included"),
    "pool.jsonl": (lambda walk: str(pool_cut(walk)),
                   "the same cut of the pool: the pairs the judge labelled, now with their human labels"),
    "pool_labels.jsonl": (lambda walk: str(pool_labels_cut(walk)), "the pool's human winners, for the cut's ids"),
    "human.jsonl": (lambda walk: str(cut(walk, "human_small.jsonl", "human.jsonl")),
                    "the small human set: human_small.jsonl, cut"),
    "pairwise": (lambda walk: "hh",
                 "`--format pairwise` of human.jsonl: human_small.jsonl holds HH transcripts (the README's comment "
                 "lists hh)"),
    "heldout.jsonl": (lambda walk: str(cut(walk, "human_heldout.jsonl", "heldout.jsonl")),
                      "the held-out human labels: human_heldout.jsonl, cut, its bad row included"),
    "export.json": (lambda walk: str(label_studio_answers(walk)),
                    "Label Studio's JSON export of batch.json, answered as the pool's human labels answer: no "
                    "Label Studio server or annotator here (`make test-label-studio` runs a real one)"),
    "candidates.jsonl": (lambda walk: str(candidates(walk)),
                         "best-of-N candidates: no shipped file holds them; each pool prompt with its two responses"),
    "http://localhost:8000/v1": (lambda walk: walk.server.openai_base,
                                 "a vLLM / Ollama server: the loopback judge speaks the same protocol"),
    "http://gpu1:8000/v1": (lambda walk: walk.server.openai_base, "the same, for a fleet's first server"),
    "http://gpu2:8000/v1": (lambda walk: walk.server.openai_base, "the same, for its second"),
    "3f9a2c1e": (lambda walk: stored_hash_prefix(walk),
                 "`prefgen show`'s example id: the first 8 hex digits of a stored judgement's request hash"),
}
# Options added to a command (its first words -> options, why).
ADDED: dict[str, tuple[list[str], str]] = {
    "train": (["--max-length", "64"], "the default length costs minutes of features on 2 busy cores"),
    "mix --auto": (["--max-length", "64"], "the same, for the 15 trainings of the search"),
}
# `train` and `mix --auto` get `--base` MiniLM (by its directory) where the README gives no --base: the default
# SmolLM2 costs minutes of features on 2 busy cores; the README's own `--base minilm` line is run as printed.
BASE = "--base"
# The environment: the README's `export OPENAI_API_KEY=...` sets a key the loopback judge takes (sent to
# 127.0.0.1 only), and OPENAI_BASE_URL (read by prefgen as by OpenAI's SDK) points `openai:gpt-4o-mini` there.
ENV = {"OPENAI_API_KEY": "loopback-key"}  # and OPENAI_BASE_URL: the loopback judge's address
# Not a substitution but the machine: torch trains on one thread here (`one_torch_thread`), as OMP_NUM_THREADS=1
# sets it. On 2 cores busy with other work, two torch threads wait on each other at every small op of the
# MiniLM head: `mix --auto` on 30 human pairs took 110 s with two threads and 20 s with one.

# -- what cannot run here ----------------------------------------------------------------------------------------

SKIP = {
    "make demo": "sets up .venv and runs examples/demo.sh with the offline local judge: `make demo` is its check",
    "make test": "the whole test suite, this test included",
    "vllm serve Qwen/Qwen2.5-7B-Instruct --port 8000": "needs a GPU and the model's weights; the loopback judge "
                                                       "stands in for the server it starts",
    "prefgen label -c constitution.yaml -p pairs.jsonl --skip-bad --judge openai:MODEL --api-base "
    "http://gpu1:8000/v1 --engine ray --workers 8 --concurrency 64 --address auto":
        "a Ray cluster (--address auto); a local Ray instance alone takes minutes to start on 2 cores: "
        "tests/test_label_ray.py runs --engine ray against the loopback judge",
    "prefgen ingest prefs.duckdb.shards/ --db prefs.duckdb": "the shards a killed Ray driver left (the command "
                                                             "above does not run); tests/test_label_ray.py ingests",
    "python -m venv .venv && . .venv/bin/activate": "a GPU machine's install (network, a CUDA build of torch)",
    "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cu124": "the same GPU install",
    "make install": "the same GPU install",
}

# -- what runs, in the README's order, and what is checked after it ----------------------------------------------


@dataclass
class Walk:
    """The temporary directory the commands run in, and the loopback judge."""

    dir: Path
    server: LoopbackServer

    def query(self, sql: str) -> list[tuple]:
        with Store(self.dir / "prefs.duckdb", read_only=True) as store:
            return store.con.execute(sql).fetchall()

    def count(self, sql: str) -> int:
        return self.query(sql)[0][0]


def estimated_and_sent_nothing(walk: Walk, out: str) -> None:
    assert "dry run: nothing was sent" in out and walk.server.received == 0


def kept_pairs_and_said_what_it_skipped(walk: Walk, out: str) -> None:
    assert walk.count("SELECT count(*) FROM kept_pairs") > 0
    assert "Skipped 3 bad row(s) (--skip-bad)" in out and "empty response" in out


def every_human_train_label_in_the_mix(walk: Walk, out: str) -> None:
    train = {r[0] for r in walk.query("SELECT pair_id FROM human_pair_labels WHERE split = 'train' "
                                      "AND winner <> 'tie'")}
    mixed = {r[0] for r in walk.query("SELECT pair_id FROM mix_rows WHERE mix_name = 'm1' AND source = 'human'")}
    assert train and train <= mixed


def the_exported_mix_has_every_row(walk: Walk, out: str) -> None:
    from datasets import load_from_disk

    assert len(load_from_disk(str(walk.dir / "mix-m1"))) == walk.count(
        "SELECT count(*) FROM mix_rows WHERE mix_name = 'm1'")


def the_routed_answers_came_back(walk: Walk, out: str) -> None:
    assert walk.count("SELECT count(DISTINCT pair_id) FROM human_labels WHERE source = 'export'") > 0


def cross_checked_the_mix_rows(walk: Walk, out: str) -> None:
    wrote("batch.json", "batch.label_config.xml")(walk, out)
    assert "cross-check: reward models trained without each prompt" in out
    assert walk.count("SELECT count(*) FROM route_batches WHERE cross_check IS NOT NULL") == 1
    assert walk.count("SELECT count(rm_check) FROM route_items") == walk.count(
        "SELECT count(mix_error) FROM route_items") > 0


def skipped_the_bad_row_and_kept_the_rest(walk: Walk, out: str) -> None:
    assert f"skipped 1 bad rows (--skip-bad):\n  {walk.dir / 'heldout.jsonl'}:{ROWS + 1}" in out
    assert walk.count("SELECT count(DISTINCT pair_id) FROM human_labels WHERE source = 'heldout' "
                      "AND split = 'heldout'") == ROWS


def every_pool_pair_labelled(walk: Walk, out: str) -> None:
    assert walk.count("SELECT count(DISTINCT pair_id) FROM human_labels WHERE source = 'pool_labels'") \
        == ROWS + len(BAD_LINES["pool.jsonl"])  # a human label may prefer a response to an empty one


def printed_held_out_agreement(walk: Walk, out: str) -> None:
    assert "agreement with held-out humans" in out and walk.count("SELECT count(*) FROM rm_evals") > 0


def scored_every_candidate(walk: Walk, out: str) -> None:
    rows = [json.loads(line) for line in (walk.dir / "candidates.scored.jsonl").read_text().splitlines()]
    assert len(rows) == ROWS and all(len(row["rewards"]) == 2 for row in rows)


def wrote(*names: str) -> Callable[[Walk, str], None]:
    def check(walk: Walk, out: str) -> None:
        assert [name for name in names if not (walk.dir / name).exists()] == []
    return check


# Every README command that runs (as printed, whitespace collapsed) -> its check (None: exit 0 is the check).
RUN: dict[str, Callable[[Walk, str], None] | None] = {
    "export OPENAI_API_KEY=...": None,
    "prefgen label --constitution examples/constitution.yaml --pairs pairs.jsonl --skip-bad --judge "
    "openai:gpt-4o-mini --db prefs.duckdb --concurrency 64 --max-cost 5 --dry-run": estimated_and_sent_nothing,
    "prefgen label --constitution examples/constitution.yaml --pairs pairs.jsonl --skip-bad --judge "
    "openai:gpt-4o-mini --db prefs.duckdb --concurrency 64 --max-cost 5": kept_pairs_and_said_what_it_skipped,
    "prefgen label --constitution examples/constitution.yaml --pairs pairs.jsonl --skip-bad --db prefs.duckdb "
    "--judge openai:Qwen/Qwen2.5-7B-Instruct --api-base http://localhost:8000/v1 --max-cost 5 --price-in 0.2 "
    "--price-out 0.2": None,
    # The direct run above answered every call: the batch run finds them stored and sends nothing.
    "prefgen label --constitution examples/constitution.yaml --pairs pairs.jsonl --skip-bad --judge "
    "openai:gpt-4o-mini --db prefs.duckdb --max-cost 5 --batch --batch-poll 60": None,
    "prefgen stats --db prefs.duckdb": None,
    'prefgen sql "SELECT * FROM position_bias" --db prefs.duckdb': None,
    'prefgen sql "SELECT * FROM kept_pairs" --db prefs.duckdb --format parquet --out kept.parquet':
        wrote("kept.parquet"),
    "prefgen report --db prefs.duckdb --out report.html": wrote("report.html"),
    "prefgen show 3f9a2c1e --db prefs.duckdb": None,
    "prefgen import-human human.jsonl --format pairwise --db prefs.duckdb": None,
    "prefgen split --db prefs.duckdb --heldout 0.3 --seed 0": None,
    "prefgen agreement --db prefs.duckdb": None,
    "prefgen mix --db prefs.duckdb --name m1 --auto --seed 0": every_human_train_label_in_the_mix,
    "prefgen export --db prefs.duckdb --mix m1 --format hf --out mix-m1": the_exported_mix_has_every_row,
    "prefgen route --db prefs.duckdb --budget 100 --cross-check --format label-studio --out batch.json":
        cross_checked_the_mix_rows,
    "prefgen import-human export.json --format label-studio --db prefs.duckdb": the_routed_answers_came_back,
    "prefgen import-human heldout.jsonl --split heldout --skip-bad --db prefs.duckdb":
        skipped_the_bad_row_and_kept_the_rest,
    "prefgen import-human pool.jsonl --labels pool_labels.jsonl --on id --column winner=human_winner --db "
    "prefs.duckdb": every_pool_pair_labelled,
    "prefgen train --db prefs.duckdb --mix m1 --out rm-m1": wrote("rm-m1/README.md"),
    "prefgen train --db prefs.duckdb --mix m1 --out rm-m1f --base minilm": wrote("rm-m1f/README.md"),
    "prefgen eval --model rm-m1 --db prefs.duckdb --split heldout": printed_held_out_agreement,
    "prefgen score --model rm-m1 --responses candidates.jsonl": scored_every_candidate,
    "prefgen label -c constitution.yaml -p pairs.jsonl --skip-bad --judge openai:Qwen/Qwen2.5-7B-Instruct "
    "--api-base http://gpu1:8000/v1 --api-base http://gpu2:8000/v1 --concurrency 256": None,
}
# The README's Python snippets, by the heading they are under: each runs in a directory of its own.
PYTHON = {"### 5. From Python or a notebook"}


# -- reading the README -------------------------------------------------------------------------------------------


def readme_steps() -> list[tuple[str, str, str]]:
    """(kind, heading, text) in the README's order: each shell command of a ```bash block (continuation lines
    joined, comments dropped, whitespace collapsed), and each ```python block whole."""
    steps, heading = [], ""
    for part in re.split(r"(^```(?:bash|python)\n.*?^```$|^#{1,4} [^\n]*$)", README.read_text(), flags=re.M | re.S):
        if re.match(r"#{1,4} ", part):
            heading = part.strip()
        elif part.startswith("```python\n"):
            steps.append(("python", heading, part.removeprefix("```python\n").removesuffix("```")))
        elif part.startswith("```bash\n"):
            for line in part.removeprefix("```bash\n").removesuffix("```").replace("\\\n", " ").splitlines():
                line = re.sub(r"\s+", " ", re.split(r"\s#", " " + line, maxsplit=1)[0]).strip()
                if line:
                    steps.append(("bash", heading, line))
    return steps


def test_every_readme_command_is_run_or_skipped_with_a_reason():
    steps = readme_steps()
    commands = [text for kind, _, text in steps if kind == "bash"]
    assert [c for c in commands if c not in RUN and c not in SKIP] == [], "README commands this test does not know"
    assert [c for c in [*RUN, *SKIP] if c not in commands] == [], "commands the README no longer has"
    assert {heading for kind, heading, _ in steps if kind == "python"} == PYTHON
    words = {word for c in RUN for word in shlex.split(c)}
    assert [w for w in SUBSTITUTE if w not in words] == [], "substitutions no command needs"
    assert all(reason for reason in SKIP.values()) and all(why for _, why in SUBSTITUTE.values())


# -- the stand-ins ------------------------------------------------------------------------------------------------


def cut(walk: Walk, shipped: str, name: str) -> Path:
    """The first ROWS rows of a shipped file, and its BAD_LINES, as `name` in the walk's directory."""
    target = walk.dir / name
    if not target.exists():
        lines = (HH / shipped).read_text(encoding="utf-8").splitlines()
        keep = [*lines[:ROWS], *(lines[n - 1] for n in BAD_LINES.get(shipped, ()))]
        target.write_text("".join(line + "\n" for line in keep), encoding="utf-8")
    return target


def pool_cut(walk: Walk) -> Path:
    return cut(walk, "pool.jsonl", "pool.jsonl")


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def pool_labels_cut(walk: Walk) -> Path:
    ids = {row["id"] for row in rows(pool_cut(walk))}
    target = walk.dir / "pool_labels.jsonl"
    target.write_text("".join(json.dumps(r) + "\n" for r in rows(HH / "pool_labels.jsonl") if r["id"] in ids))
    return target


def label_studio_answers(walk: Walk) -> Path:
    """What Label Studio exports once an annotator answered batch.json as the shipped human labels do, each task
    in the order it shows the two responses."""
    winners = {r["id"]: r["human_winner"] for r in rows(HH / "pool_labels.jsonl")}
    better = {frozenset((r["response_a"], r["response_b"])): r[f"response_{winners[r['id']]}"]
              for r in rows(pool_cut(walk))}
    tasks = json.loads((walk.dir / "batch.json").read_text(encoding="utf-8"))
    answers = {}
    for task in tasks:
        shown = task["data"]
        best = better[frozenset((shown["response_1"], shown["response_2"]))]
        answers[shown["pair_id"]] = [(1, "Response 1" if shown["response_1"] == best else "Response 2")]
    target = walk.dir / "export.json"
    target.write_text(json.dumps(label_studio_export(tasks, answers)), encoding="utf-8")
    return target


def candidates(walk: Walk) -> Path:
    target = walk.dir / "candidates.jsonl"
    target.write_text("".join(json.dumps({"prompt": r["prompt"], "responses": [r["response_a"], r["response_b"]]})
                              + "\n" for r in rows(pool_cut(walk))[:ROWS]), encoding="utf-8")
    return target


def stored_hash_prefix(walk: Walk) -> str:
    stored = walk.query("SELECT request_hash FROM judgements ORDER BY request_hash LIMIT 1")[0][0]
    return stored.split("-", 1)[1][:8]  # the hex part, as the README shows it (the tag is implied)


def substituted(command: str, walk: Walk) -> list[str]:
    """The command's words after `prefgen`, with SUBSTITUTE's stand-ins and ADDED's options."""
    words = [SUBSTITUTE[w][0](walk) if w in SUBSTITUTE else w for w in shlex.split(command)[1:]]
    for first, (options, _) in ADDED.items():
        head, *flags = first.split()
        if words[0] == head and all(flag in words for flag in flags):
            words += ([] if BASE in words else [BASE, str(default_base_path())]) + options
    return words


# -- the walk -----------------------------------------------------------------------------------------------------


def longer(first: str, second: str) -> str:
    return "A" if len(first) > len(second) else "B"


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Torch on one thread while the walk trains (see the note below ENV); the suite's setting after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow  # labels, runs a mix --auto search and trains reward models (MiniLM, SmolLM2 at 64 tokens)
def test_the_readme_walkthrough_runs_as_printed(tmp_path, loopback_server, monkeypatch, one_torch_thread):
    if not HH.is_dir():
        pytest.skip(f"the shipped HH-RLHF data is not here ({HH})")
    loopback_server.reset()
    loopback_server.behaviour = Behaviour(truth=longer, confidence=0.97)
    walk = Walk(tmp_path / "walk", loopback_server)
    walk.dir.mkdir()
    monkeypatch.chdir(walk.dir)
    monkeypatch.setenv("OPENAI_BASE_URL", loopback_server.openai_base)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # the README's `export` sets it
    for kind, heading, text in readme_steps():
        if kind == "python":
            run_snippet(text, tmp_path / "python", monkeypatch)
            monkeypatch.chdir(walk.dir)
        elif text in SKIP:
            continue
        elif text.startswith("export "):
            name, _, value = text.removeprefix("export ").partition("=")
            monkeypatch.setenv(name, ENV[name] if value == "..." else value)
        else:
            result = CliRunner().invoke(cli, substituted(text, walk))
            unexpected = not isinstance(result.exception, SystemExit | None)
            assert result.exit_code == 0, (f"{heading}: `{text}` exited {result.exit_code}:\n{result.output}"
                                           + ("".join(traceback.format_exception(*result.exc_info))
                                              if unexpected else ""))
            if RUN[text] is not None:
                RUN[text](walk, result.output)


def run_snippet(code: str, where: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A README Python snippet, as a notebook cell runs it, in a directory that is not the checkout."""
    where.mkdir()
    monkeypatch.chdir(where)
    names: dict = {"__name__": "__readme__"}
    exec(compile(code, f"{README}:python", "exec"), names)
    assert names["summary"].exit_code == 0 and names["summary"].kept_pairs > 0
    assert (where / "prefs.duckdb").is_file() and (where / "rm-m1" / "README.md").is_file()
