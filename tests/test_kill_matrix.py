"""Nothing paid for is lost, whatever ends a command: the kill matrix.

`label` and `import-human`, into a new store and into one that has been written and closed before, each ended
by SIGKILL, SIGTERM and SIGHUP at ten moments from 50 ms after its start to the end of its run. After every
one of those 120 endings: the store opens, `stats` works, running the same command again completes with one
judgement per call (one label per row), a SIGTERM or SIGHUP exits 143 / 129 having written every answer it got
(nothing is asked twice), and a SIGKILL costs at most the calls of its last second (answers are written at
least once a second) plus those in flight.

The commands run as forked children of a preloaded fork server (`tests.forked_cli`), so that a hundred of them
start in milliseconds rather than in a second of imports each; the re-runs and `stats` run in this process.
The matrix, with the worst re-sent count, is printed at the end (`pytest -s` shows it).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from prefgen.cli import cli
from tests.forked_cli import ForkedCli
from tests.loopback_server import Behaviour, LoopbackServer
from tests.test_label_pipeline import CONSTITUTION, query, truth, write_pairs

SIGNALS = {"SIGKILL": signal.SIGKILL, "SIGTERM": signal.SIGTERM, "SIGHUP": signal.SIGHUP}
MOMENTS = 10
LABEL_PAIRS = 40  # 160 calls: a run of a second or two at this latency and concurrency
CONCURRENCY = 8
LATENCY_S = 0.02
HUMAN_ROWS = 4000  # an import of about a second


@dataclass
class Cell:
    """One (command, store, signal) row of the matrix: how many endings the checks passed, of how many."""

    tried: int = 0
    survived: int = 0
    worst_resent: int = 0
    codes: dict[int, int] = field(default_factory=dict)


@dataclass
class Bench:
    """The inputs, the template stores and the measured reference run shared by every ending."""

    root: Path
    server: LoopbackServer
    forked: ForkedCli
    duration_s: dict[str, float] = field(default_factory=dict)  # a whole run of each command, start to exit
    calls_per_s: float = 0.0
    matrix: dict[tuple[str, str, str], Cell] = field(default_factory=dict)

    def argv(self, command: str, db: Path) -> list[str]:
        if command == "label":
            return ["label", "-c", str(self.root / "c.yaml"), "-p", str(self.root / "pairs.jsonl"), "--db", str(db),
                    "--judge", "openai:gpt-4o-mini", "--api-base", self.server.openai_base, "--api-key", "k",
                    "--concurrency", str(CONCURRENCY), "--no-progress"]
        return ["import-human", str(self.root / "human.jsonl"), "--db", str(db), "--format", "pairwise",
                "--source", "trial"]


def write_human(path: Path, n: int, offset: int = 0) -> Path:
    with path.open("w", encoding="utf-8") as f:
        for i in range(offset, offset + n):
            f.write(json.dumps({"prompt": f"human question {i}?", "response_a": f"first answer {i}",
                                "response_b": f"second answer {i}", "winner": "ab"[i % 2]}) + "\n")
    return path


def invoke(argv: list[str]):
    return CliRunner().invoke(cli, argv)


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Bench:
    root = tmp_path_factory.mktemp("kill-matrix")
    (root / "c.yaml").write_text(CONSTITUTION, encoding="utf-8")
    write_pairs(root / "pairs.jsonl", LABEL_PAIRS)
    write_human(root / "human.jsonl", HUMAN_ROWS)
    with LoopbackServer(behaviour=Behaviour(truth=truth, latency_s=LATENCY_S)) as server:
        bench = Bench(root, server, ForkedCli())
        _make_existing_stores(bench)
        _measure_reference_runs(bench)
        yield bench
    _print_matrix(bench)


def _make_existing_stores(bench: Bench) -> None:
    """Stores written and closed before: other pairs labelled by the same job, another source imported."""
    root = bench.root
    with (root / "earlier.jsonl").open("w", encoding="utf-8") as f:
        for i in range(20):
            f.write(json.dumps({"prompt": f"earlier question {i}?", "response_a": f"answer with quality {i % 5}",
                                "response_b": f"answer with quality {i % 5 + 2}"}) + "\n")
    write_human(root / "earlier-human.jsonl", 200, offset=HUMAN_ROWS)
    for command in ("label", "import-human"):
        db = root / f"existing-{command}.duckdb"
        argv = bench.argv(command, db)
        argv[argv.index(str(root / ("pairs.jsonl" if command == "label" else "human.jsonl")))] = str(
            root / ("earlier.jsonl" if command == "label" else "earlier-human.jsonl"))
        if command == "import-human":
            argv[argv.index("trial")] = "earlier"
        assert invoke(argv).exit_code == 0


def _measure_reference_runs(bench: Bench) -> None:
    """One whole run of each command, unsignalled: how long it takes, and the label run's calls per second."""
    for command in ("label", "import-human"):
        db = bench.root / f"reference-{command}.duckdb"
        bench.server.reset(Behaviour(truth=truth, latency_s=LATENCY_S))
        started = time.monotonic()
        child = bench.forked.start(bench.argv(command, db), bench.root / f"reference-{command}.out")
        first_call = None
        while child.is_alive():
            if first_call is None and bench.server.received:
                first_call = time.monotonic()
            time.sleep(0.005)
        child.join()
        assert child.exitcode == 0, (bench.root / f"reference-{command}.out").read_text()
        ended = time.monotonic()
        bench.duration_s[command] = ended - started
        if command == "label":
            bench.calls_per_s = bench.server.received / max(ended - (first_call or started), 1e-3)


def _store_for(bench: Bench, command: str, kind: str, name: str) -> Path:
    db = bench.root / f"{name}.duckdb"
    for leftover in bench.root.glob(f"{name}.duckdb*"):
        leftover.unlink()
    if kind == "existing":
        shutil.copy(bench.root / f"existing-{command}.duckdb", db)
    return db


def _end(bench: Bench, command: str, db: Path, sig: int, moment: float, output: Path) -> tuple[int, float]:
    """Start the command, signal it `moment` seconds later; (its exit code, the calls per second it sent at)."""
    child = bench.forked.start(bench.argv(command, db), output)
    deadline = time.monotonic() + moment
    first_call = None
    while child.is_alive() and time.monotonic() < deadline:
        if first_call is None and bench.server.received:
            first_call = time.monotonic()
        time.sleep(0.002)
    sent, signalled = bench.server.received, time.monotonic()
    if child.is_alive():
        os.kill(child.pid, sig)
    child.join(120)
    assert child.exitcode is not None, f"{command} did not end within 120 s of {signal.Signals(sig).name}"
    rate = sent / (signalled - first_call) if first_call is not None and signalled - first_call > 0.2 else 0.0
    return child.exitcode, rate


def _judgements(db: Path) -> tuple[int, int, int]:
    """(rows, distinct calls, attempts) of the store's judgements; zeros for no store."""
    if not db.exists():
        return 0, 0, 0
    rows, distinct, attempts = query(
        db, "SELECT count(*), count(DISTINCT (pair_id, principle_id, ordering)), coalesce(sum(attempts), 0) "
            "FROM judgements")[0]
    return rows, distinct, attempts


def _check_label(bench: Bench, db: Path, sig: int, code: int, before: tuple[int, int, int], rate: float) -> int:
    """The checks after a label run ended (`rate`: the calls per second it sent at); returns how many calls were
    sent again."""
    if db.exists():
        assert invoke(["stats", "--db", str(db)]).exit_code == 0
    rerun = invoke(bench.argv("label", db))
    assert rerun.exit_code == 0, rerun.output
    assert invoke(["stats", "--db", str(db)]).exit_code == 0
    rows, distinct, attempts = _judgements(db)
    assert rows == distinct == before[0] + LABEL_PAIRS * 2 * 2  # one judgement per call
    assert query(db, "SELECT count(*) FROM preferences WHERE drop_reason = 'pending'") == [(0,)]
    resent = bench.server.received - (attempts - before[2])
    if sig != signal.SIGKILL and code != -sig:
        assert resent == 0, f"{resent} calls answered before {signal.Signals(sig).name} were asked again"
    bound = max(bench.calls_per_s, rate) * 1.0 + CONCURRENCY
    assert resent <= bound, f"{resent} calls sent again after a kill: more than one second of calls ({bound:.0f})"
    return resent


def _check_import(bench: Bench, db: Path) -> None:
    if db.exists():
        assert invoke(["stats", "--db", str(db)]).exit_code == 0
        trial = query(db, "SELECT count(*) FROM human_labels WHERE source = 'trial'")[0][0]
        assert trial in (0, HUMAN_ROWS)  # an import is one transaction: all of it or none
    rerun = invoke(bench.argv("import-human", db))
    assert rerun.exit_code == 0, rerun.output
    assert invoke(["stats", "--db", str(db)]).exit_code == 0
    assert query(db, "SELECT count(*), count(DISTINCT pair_id) FROM human_labels WHERE source = 'trial'") == [
        (HUMAN_ROWS, HUMAN_ROWS)]


def _moments(duration_s: float) -> list[float]:
    """50 ms, then evenly to the end of a whole run."""
    return [0.05] + [duration_s * k / (MOMENTS - 1) for k in range(1, MOMENTS)]


@pytest.mark.parametrize("command", ["label", "import-human"])
@pytest.mark.parametrize("store", ["new", "existing"])
@pytest.mark.parametrize("sig_name", list(SIGNALS))
def test_every_ending_leaves_a_store_that_opens_and_resumes_with_nothing_lost(bench, command, store, sig_name):
    sig = SIGNALS[sig_name]
    cell = bench.matrix.setdefault((command, store, sig_name), Cell())
    for i, moment in enumerate(_moments(bench.duration_s[command])):
        name = f"{command}-{store}-{sig_name}-{i}"
        db = _store_for(bench, command, store, name)
        before = db.read_bytes() if db.exists() else None
        judged_before = _judgements(db)
        bench.server.reset(Behaviour(truth=truth, latency_s=LATENCY_S))
        output = bench.root / f"{name}.out"
        cell.tried += 1
        code, rate = _end(bench, command, db, sig, moment, output)
        cell.codes[code] = cell.codes.get(code, 0) + 1
        said = output.read_text(errors="replace")
        context = f"{name} at {moment:.2f} s exited {code}: {said[-600:]}"
        if code == -sig:  # ended by the signal itself: before the handlers were installed, or SIGKILL
            assert sig == signal.SIGKILL or (db.read_bytes() if db.exists() else None) == before, context
        else:
            assert code in (0, 128 + sig), context  # finished first, or ended as Ctrl-C ends it
            assert "Traceback" not in said, context
            if code == 128 + sig:
                assert "Run the same command to resume" in " ".join(said.split()), context
        if command == "label":
            cell.worst_resent = max(cell.worst_resent, _check_label(bench, db, sig, code, judged_before, rate))
        else:
            _check_import(bench, db)
        cell.survived += 1


def _print_matrix(bench: Bench) -> None:
    if not bench.matrix:
        return
    lines = [f"kill matrix: DuckDB {duckdb.__version__}, {LABEL_PAIRS * 4} label calls at {bench.calls_per_s:.0f} "
             f"calls/s (one second = {bench.calls_per_s:.0f} calls + {CONCURRENCY} in flight), {HUMAN_ROWS} human "
             f"rows; runs of {bench.duration_s['label']:.2f} s (label) and {bench.duration_s['import-human']:.2f} s",
             f"{'command':<14}{'store':<10}{'signal':<9}{'survived / tried':>18}{'worst re-sent':>15}  exit codes"]
    for (command, store, sig_name), cell in sorted(bench.matrix.items()):
        resent = str(cell.worst_resent) if command == "label" else "-"
        lines.append(f"{command:<14}{store:<10}{sig_name:<9}{f'{cell.survived} / {cell.tried}':>18}{resent:>15}  "
                     f"{dict(sorted(cell.codes.items()))}")
    print("\n" + "\n".join(lines))
