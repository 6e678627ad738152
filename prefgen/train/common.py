"""What every part of `prefgen.train` shares: the files a trained model directory holds, and the device.

Kept apart (and free of imports from the rest of the package) so that training, scoring, evaluation and
the model card can all use it without importing each other.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

TRAIN_RECORD = "prefgen_train.json"  # how the model was trained: enough to reproduce it and score like it
ENSEMBLE_MANIFEST = "ensemble.json"  # present in an ensemble's directory, next to member-0, member-1...
SCORE_BATCH_SIZE = 16  # responses per forward pass when a trained model scores (eval, score)


def launched_world_size() -> int:
    """The number of processes this one was launched among by `accelerate launch` (1 when not launched)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


class DeviceChoice(NamedTuple):
    device: str  # "cuda" or "cpu"
    dtype: str  # precision of the forward/backward pass
    bf16: bool  # TrainingArguments.bf16 (mixed precision; master weights stay fp32)


def pick_device(cuda_available: bool | None = None, bf16_supported: bool | None = None) -> DeviceChoice:
    """CUDA with bf16 mixed precision when a GPU can do it, else CPU in fp32.

    The arguments are for tests; by default torch is asked.
    """
    if cuda_available is None:
        import torch

        cuda_available = torch.cuda.is_available()
    if not cuda_available:
        return DeviceChoice("cpu", "float32", False)
    if bf16_supported is None:
        import torch

        bf16_supported = torch.cuda.is_bf16_supported()
    # fp16 needs loss scaling and overflows on reward logits; pre-Ampere GPUs train in fp32 instead.
    return DeviceChoice("cuda", "bfloat16", True) if bf16_supported else DeviceChoice("cuda", "float32", False)


def quiet_libraries() -> None:
    """transformers' and datasets' own progress bars off ("Loading weights", "Filtering train", "Writing model
    shards"): prefgen shows its stages itself on stderr, and theirs, once per model, fill the terminal during a
    `mix --auto` that trains fifteen. Their warnings and errors still show."""
    import datasets
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()
    # The GGUF loader ("Converting and de-quantizing GGUF tensors") calls tqdm itself, past transformers' switch.
    from transformers import modeling_gguf_pytorch_utils as gguf

    if not isinstance(gguf.tqdm, functools.partial):
        gguf.tqdm = functools.partial(gguf.tqdm, disable=True)


def native_bf16(device: str) -> bool:
    """Whether `device` computes bf16 matrix products natively: a GPU that supports bf16, or a CPU with
    AVX512-BF16 or AMX instructions (read from /proc/cpuinfo; elsewhere, e.g. macOS, False).

    Only native support is worth it: a CPU without those instructions emulates bf16 and runs slower than in
    fp32.
    """
    if device.startswith("cuda"):
        import torch

        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            flags = next((line for line in cpuinfo if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def feature_precision(choice: str, device: str) -> str:
    """The precision the frozen base computes features in: `choice`, with "auto" decided for the device
    (bf16 where it is native, see `native_bf16`)."""
    if choice != "auto":
        return choice
    return "bf16" if native_bf16(device) else "fp32"


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run torch's CPU ops on `n` threads, then go back to what was set.

    For the head method's small ops: a (32 x 576) matrix product gains nothing from a second thread, and on
    cores shared with other work each op then waits at OpenMP's barrier for a thread that was descheduled
    (measured on 2 busy cores: 15-23 ms per head step on 2 threads, 1.6-2.6 ms on 1)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
