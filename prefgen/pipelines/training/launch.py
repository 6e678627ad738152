"""Training data-parallel under accelerate: `prefgen train --processes N` or `accelerate launch -m prefgen train`.

Every process runs the same TRL stage (`train_reward_model`) on the same mix; accelerate gives each an equal
share of every batch (`--batch-size` is the whole step's, so N processes train the batches, steps and schedule
of one) and averages the gradients (NCCL on GPUs, gloo on CPU). Process 0 is the one that talks to the
store and writes the checkpoint: DuckDB lets one process write a file, and no other may even read it meanwhile,
so the other processes read the mix first and process 0 opens the store for writing only once they all have.

With the default method `head` (frozen base, cached features) every process computes the features of every
row and the head is tiny: more processes do not make it faster. Data-parallel pays off with `--method full`
or `lora`, where the base's forward and backward passes are split across processes.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from prefgen.errors import PrefgenError
from prefgen.pipelines.training.stages import TrainOutcome, train_from_mix, with_mix_recipe
from prefgen.storage import training as training_sql
from prefgen.storage.db import Store
from prefgen.storage.export import mix_rows_for_training
from prefgen.train.common import launched_world_size
from prefgen.train.config import TrainConfig
from prefgen.train.trainer import per_device_batch


def run_training(db: Path, mix: str, config: TrainConfig) -> TrainOutcome | None:
    """Train on a stored mix in this process, in a process group this one belongs to, or by launching
    `config.processes` of them. Returns the outcome where process 0 runs (here, or nothing when launched)."""
    if launched_world_size() > 1:
        return train_in_process_group(db, mix, config)
    if config.processes > 1:
        launch(config.processes, db, mix, config)
        return None
    with Store(db) as store:
        return train_from_mix(store, mix, config)


def launch(processes: int, db: Path, mix: str, config: TrainConfig) -> None:
    """`accelerate launch` of `python -m prefgen train` on `processes` processes of this machine."""
    if config.ensemble > 1:
        raise PrefgenError("--processes trains one model: leave out --ensemble, or run without --processes")
    per_device_batch(config.batch_size, processes)  # refused here, before any process starts
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(_free_port()),
        "-m", "prefgen", "train", "--db", str(db), "--mix", mix, "--out", str(config.out_dir),
        # What was chosen only: every process then applies an auto mix's recipe to the rest, as one process does.
        "--config-json", config.chosen_json(),
    ]
    returncode = subprocess.run(command, check=False).returncode
    if returncode != 0:
        raise PrefgenError(f"training on {processes} processes failed (exit code {returncode}); "
                           "its output is above")


def train_in_process_group(db: Path, mix: str, config: TrainConfig) -> TrainOutcome | None:
    import torch
    from accelerate import PartialState

    from prefgen.train.trainer import train_reward_model

    # The same state the trainer's accelerator joins later; on CPU the group is gloo.
    state = PartialState(cpu=not torch.cuda.is_available())
    if not state.is_main_process:
        with Store(db, read_only=True) as store:
            rows = mix_rows_for_training(store, mix)
            config = with_mix_recipe(store, mix, config, say=False)  # process 0 says it
        state.wait_for_everyone()  # every reader is done: process 0 may open the store for writing
        train_reward_model(rows, config, save=False)
        return None
    state.wait_for_everyone()
    with Store(db) as store:
        outcome = train_from_mix(store, mix, config)
        training_sql.record_world_size(store, outcome.run_id, state.num_processes)
    return outcome


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
