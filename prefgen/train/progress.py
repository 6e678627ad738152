"""Training progress on stderr, one line that updates, instead of transformers' per-step dicts on stdout.

The Trainer prints a dict for every logging step (`PrinterCallback`) or draws tqdm bars (`ProgressCallback`),
both on stdout, which is where `--json` output goes. prefgen removes them and reports through this callback:
a transient rich progress line on stderr ("training: step 40/100, epoch 2/5, loss 0.512"), shown on a terminal
only. The logged losses stay in the trainer's log history, which the run record keeps.
"""

from __future__ import annotations

import functools
from typing import Any


@functools.cache
def progress_callback_class() -> type:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
    from transformers import TrainerCallback

    class StepProgress(TrainerCallback):
        """A rich progress line per training run: steps, epoch, the last logged loss and the time left."""

        def __init__(self, label: str = "training") -> None:
            self.label = label
            self.progress: Progress | None = None
            self.task: Any = None
            self.loss = ""

        def on_train_begin(self, args, state, control, **kwargs):
            if not state.is_world_process_zero:
                return
            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
                                     TimeRemainingColumn(), console=Console(stderr=True), transient=True)
            self.progress.start()
            self.task = self.progress.add_task(self.label, total=state.max_steps, info="")

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.loss = f", loss {float(logs['loss']):.3f}"

        def on_step_end(self, args, state, control, **kwargs):
            if self.progress is not None:
                epochs = f"epoch {state.epoch:.1f}/{args.num_train_epochs:g}" if state.epoch is not None else ""
                self.progress.update(self.task, completed=state.global_step,
                                     info=f"step {state.global_step}/{state.max_steps} {epochs}{self.loss}")

        def on_train_end(self, args, state, control, **kwargs):
            if self.progress is not None:
                self.progress.stop()
                self.progress = None

    return StepProgress


def quiet_trainer(trainer: Any, label: str = "training") -> Any:
    """Take transformers' stdout printers off `trainer` and put prefgen's stderr progress on."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    for callback in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(callback)
    trainer.add_callback(progress_callback_class()(label))
    return trainer
