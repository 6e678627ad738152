"""Rich progress bars: labelling (calls/s, kept rate and cost as the run goes) and scoring pairs in `eval`."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class LabelProgress:
    def __init__(self, total: int, *, enabled: bool = True, console: Console | None = None,
                 priced: bool = True) -> None:
        self.enabled = enabled and total > 0
        self.priced = priced  # without a price the cost is unknown, not $0
        self.total = total
        self.started = time.monotonic()
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TextColumn("{task.fields[kept]}"),
            TextColumn("{task.fields[cost]}"),
            TimeRemainingColumn(),
            console=console or Console(stderr=True),
            refresh_per_second=4,
            disable=not self.enabled,
        )
        self._task = self._progress.add_task("judging", total=total, rate=self._rate(0.0), kept="kept -",
                                             cost=self._cost(0.0))
        self._batches: dict[str, object] = {}  # provider batch id -> its row (`label --batch`)

    def __enter__(self) -> LabelProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def discount(self, calls: int) -> None:
        """Calls found answered already (known a chunk at a time): they leave the total."""
        if self.enabled and calls:
            self.total -= calls
            # Everything answered already (a resumed run): no "0/0 0.0 calls/s" bar.
            self._progress.update(self._task, total=self.total, visible=self.total > 0)

    def advance(self, sent: int, cost: float, kept: int, decided: int) -> None:
        if not self.enabled:
            return
        elapsed = max(time.monotonic() - self.started, 1e-9)
        kept_text = f"kept {kept}/{decided} ({kept / decided:.0%})" if decided else "kept -"
        self._progress.update(self._task, completed=sent, rate=self._rate(sent / elapsed), kept=kept_text,
                              cost=self._cost(cost))

    def batch(self, batch_id: str, status: str, done: int, total: int) -> None:
        """One row per provider batch (`label --batch`): submitted / in progress / completed, and how far."""
        if not self.enabled:
            return
        description = f"batch {batch_id} {status}"
        if batch_id not in self._batches:
            self._batches[batch_id] = self._progress.add_task(description, total=total, completed=done, rate="",
                                                              kept="", cost="")
        self._progress.update(self._batches[batch_id], description=description, completed=done, total=total)

    @staticmethod
    def _rate(rate: float) -> str:
        return f"{rate:>7.1f} calls/s"

    def _cost(self, cost: float) -> str:
        return f"${cost:.4f}" if self.priced else "cost unknown"


class ScoringProgress:
    """A rich progress bar (on stderr) while the evaluation scores pairs."""

    def __init__(self, total: int, *, enabled: bool = True) -> None:
        self.enabled = enabled and total > 0
        # "loading the model" until the first pair is scored: loading takes seconds, and a bar at 0 looks stuck.
        self._progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TimeRemainingColumn(), console=Console(stderr=True), disable=not self.enabled)
        self._task = self._progress.add_task("loading the model", total=total)

    def __enter__(self) -> ScoringProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def update(self, done: int, total: int) -> None:
        self._progress.update(self._task, completed=done, total=total, description="scoring pairs")
