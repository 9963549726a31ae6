"""The prompt dialogue of the run scripts (docs/model.md#prompts-and-options): ask, validate, and return
the answers.

Every script reads one line per prompt from standard input, in this order: ``GPU``, ``VERSION``,
``NET_NUM_VAR``, ``BATCH_SIZE``, ``BATCHS_PER_BLOCK``, then the model's own prompts
(``MODELS[model].prompts``).  A bad answer is re-asked at a terminal; on piped input the first bad
answer (or input ending early) raises `UserError`, because re-asking would shift every later answer.

The validators (`parse_gpu`, `parse_int`, `parse_scalar`, `check_batch_size`,
`check_batches_per_block`) are small pure functions that raise `UserError` with a message naming
the prompt, the value given and what is allowed.  This module imports neither TensorFlow nor NumPy.
"""
from __future__ import annotations

import io
import math
import re
import sys
import textwrap
from dataclasses import dataclass, field
from functools import reduce
from typing import Callable

from lsm_core.config import MODELS, ScalarPrompt
from lsm_core.errors import UserError

GPU_TEXT = "GPU? "
VERSION_TEXT = "VERSION? [int]: "
NET_NUM_TEXT = "NET_NUM_VAR? [int]: "
BATCH_SIZE_TEXT = "BATCH_SIZE? [int] (paper: 250 for 1000-neuron liquids, 50 for 8000): "
BATCHES_PER_BLOCK_TEXT = "BATCHS_PER_BLOCK? [int] (paper: 10 for 1000 neurons, 50 for 8000): "
BASE_PROMPTS = (("GPU", GPU_TEXT), ("VERSION", VERSION_TEXT), ("NET_NUM_VAR", NET_NUM_TEXT),
                ("BATCH_SIZE", BATCH_SIZE_TEXT), ("BATCHS_PER_BLOCK", BATCHES_PER_BLOCK_TEXT))


@dataclass(frozen=True)
class Answers:
    """The validated answers of one dialogue."""

    gpu: str                  # "cpu" or a normalised device list such as "0" or "0,1"
    version: int
    net_num: int
    batch_size: int
    batches_per_block: int
    scalars: dict = field(default_factory=dict)   # model prompt name -> value


# ------------------------------------------------------------------------------------------------
# Pure validators
# ------------------------------------------------------------------------------------------------

def parse_gpu(text: str) -> str:
    """Normalise a GPU answer: "", "cpu", "-1" -> "cpu"; " 0, 1" -> "0,1"."""
    answer = text.strip()
    if answer.lower() in ("", "cpu", "-1"):
        return "cpu"
    parts = [part.strip() for part in answer.split(",")]
    if not all(part.isdigit() and part.isascii() for part in parts):
        raise UserError(f"GPU: {answer!r} is not a valid answer; allowed: a GPU index such as 0, "
                        f"a comma-separated list of indices such as 0,1, or cpu (also -1 or an "
                        f"empty line) to run on the CPU.")
    ids = [int(part) for part in parts]
    if len(set(ids)) != len(ids):
        raise UserError(f"GPU: {answer!r} names a GPU more than once; give each index once, "
                        f"e.g. 0,1.")
    return ",".join(str(i) for i in ids)


def parse_int(name: str, text: str, minimum: int = 0) -> int:
    """Parse a whole number >= `minimum` for prompt `name`."""
    answer = text.strip()
    if not re.fullmatch(r"[+-]?[0-9]+", answer):
        raise UserError(f"{name}: {answer!r} is not a whole number; allowed: a whole number "
                        f"of at least {minimum}.")
    value = int(answer)
    if value < minimum:
        raise UserError(f"{name}: {value} is too small; allowed: a whole number of at least "
                        f"{minimum}.")
    return value


def _allowed(prompt: ScalarPrompt) -> str:
    what = "a whole number" if prompt.kind is int else "a number"
    if prompt.minimum is None:
        return what
    bound = "greater than" if prompt.exclusive_minimum else "at least"
    return f"{what} {bound} {prompt.minimum:g}"


def parse_scalar(prompt: ScalarPrompt, text: str):
    """Parse a model-specific answer as `prompt.kind`, honouring its minimum."""
    answer = text.strip()
    try:
        if prompt.kind is int:
            if not re.fullmatch(r"[+-]?[0-9]+", answer):
                raise ValueError(answer)
            value = int(answer)
        else:
            value = prompt.kind(answer)
            if not math.isfinite(value):
                raise ValueError(answer)
    except ValueError:
        raise UserError(f"{prompt.name}: {answer!r} is not a valid answer; allowed: "
                        f"{_allowed(prompt)}.") from None
    if prompt.minimum is not None and (value < prompt.minimum or
                                       (prompt.exclusive_minimum and value == prompt.minimum)):
        raise UserError(f"{prompt.name}: {answer} is out of range; allowed: {_allowed(prompt)}.")
    return value


def divisors(n: int) -> list:
    """All positive divisors of n >= 1, ascending."""
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


def _and_list(values) -> str:
    items = [str(v) for v in values]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _splits(sizes: dict) -> str:
    return ", ".join(f"{name} {size}" for name, size in sizes.items())


def _check_divides(name: str, value: int, counts: dict, what: str, label: str, context: str = "") -> int:
    """`value` must be >= 1 and divide every one of `counts` ({split: count}); else a UserError
    listing the values that would work.  `what` names the counts ("every split size"), `label` the
    values ("batch sizes")."""
    if value < 1:
        raise UserError(f"{name}: {value} is too small; allowed: a whole number of at least 1 that "
                        f"divides {what} ({_splits(counts)}).")
    numbers = list(counts.values())
    if any(number % value for number in numbers):
        working = divisors(reduce(math.gcd, numbers))
        raise UserError(f"{name}: {value} does not divide {what}{context} ({_splits(counts)}); {label} "
                        f"that divide {_and_list(numbers)}: {', '.join(map(str, working))}.")
    return value


def check_batch_size(value: int, split_sizes: dict) -> int:
    """BATCH_SIZE must be >= 1 and divide every split size (e.g. {"train": 50000, ...})."""
    return _check_divides("BATCH_SIZE", value, split_sizes, "every split size", "batch sizes")


def check_batches_per_block(value: int, batch_size: int, split_sizes: dict) -> int:
    """BATCHS_PER_BLOCK must be >= 1 and divide the number of batches of every split."""
    batches = {name: size // batch_size for name, size in split_sizes.items()}
    return _check_divides("BATCHS_PER_BLOCK", value, batches, "the number of batches of every split",
                          "batches per block", f" at BATCH_SIZE {batch_size}")


# ------------------------------------------------------------------------------------------------
# The dialogue
# ------------------------------------------------------------------------------------------------

def prompt_names(model_name: str) -> list:
    """Prompt names of a model's script, in the order they are asked."""
    return [name for name, _ in prompt_texts(model_name)]


def prompt_texts(model_name: str) -> list:
    """(name, text) of every prompt of a model's script, in the order they are asked."""
    return list(BASE_PROMPTS) + [(p.name, p.text) for p in MODELS[model_name].prompts]


def _is_tty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def ask_all(model_name: str, split_sizes: dict, stream=None, out=None) -> Answers:
    """Ask every prompt of `model_name` on `out`, read the answers from `stream`, validate them.

    `split_sizes` maps split name to sample count (train, valid, test); BATCH_SIZE must divide each
    and BATCHS_PER_BLOCK the number of batches of each.  `stream`/`out` default to sys.stdin and
    sys.stdout at call time.
    """
    stream = (sys.stdin or io.StringIO()) if stream is None else stream   # no stdin: no answers
    out = sys.stdout if out is None else out
    interactive = _is_tty(stream)
    texts = prompt_texts(model_name)

    def ask(index: int, validate: Callable[[str], object]):
        name, text = texts[index]
        while True:
            out.write(text)
            out.flush()
            line = stream.readline()
            if not line:                       # end of input
                out.write("\n")
                raise UserError(
                    f"{name}: no answer, the input ended after {index} of {len(texts)} answers. "
                    f"This script expects {len(texts)} answers, one per line, in this order: "
                    f"{', '.join(n for n, _ in texts)}.")
            answer = line.rstrip("\r\n")
            if not interactive:
                out.write(answer + "\n")
                out.flush()
            try:
                value = validate(answer)
            except UserError as exc:
                if not interactive:
                    raise UserError(f"{exc} (Answer {index + 1} of {len(texts)}; answers are read "
                                    f"from piped input, so the script stops instead of "
                                    f"re-asking.)") from None
                out.write(textwrap.fill(f"{exc} Please try again.", width=100) + "\n")
                continue
            return value

    gpu = ask(0, parse_gpu)
    version = ask(1, lambda s: parse_int("VERSION", s, 0))
    net_num = ask(2, lambda s: parse_int("NET_NUM_VAR", s, 0))
    batch_size = ask(3, lambda s: check_batch_size(parse_int("BATCH_SIZE", s, 1), split_sizes))
    per_block = ask(4, lambda s: check_batches_per_block(parse_int("BATCHS_PER_BLOCK", s, 1),
                                                         batch_size, split_sizes))
    scalars = {}
    for offset, prompt in enumerate(MODELS[model_name].prompts):
        scalars[prompt.name] = ask(len(BASE_PROMPTS) + offset,
                                   lambda s, p=prompt: parse_scalar(p, s))
    return Answers(gpu, version, net_num, batch_size, per_block, scalars)
