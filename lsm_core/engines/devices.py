"""Device choice: CUDA_VISIBLE_DEVICES from the GPU answer, and what TensorFlow actually got.

`apply_gpu_choice` must run before TensorFlow is imported (TensorFlow reads CUDA_VISIBLE_DEVICES
once, when it initialises CUDA); `check_devices` and `tensorflow_versions` import TensorFlow and
are meant to be called after it.
"""
from __future__ import annotations

import os
import platform
import sys

from lsm_core.errors import UserError


def _visible_devices_value(gpu_answer: str) -> str:
    return "-1" if gpu_answer == "cpu" else gpu_answer


def apply_gpu_choice(gpu_answer: str) -> None:
    """Set CUDA_VISIBLE_DEVICES from a normalised GPU answer ("cpu" -> "-1", "0,1" -> "0,1").

    Raises RuntimeError (a programming error) if TensorFlow is already imported and the value
    would change, since TensorFlow would then silently ignore the choice.
    """
    value = _visible_devices_value(gpu_answer)
    if "tensorflow" in sys.modules and os.environ.get("CUDA_VISIBLE_DEVICES") != value:
        raise RuntimeError("apply_gpu_choice() called after tensorflow was imported; "
                           "CUDA_VISIBLE_DEVICES would have no effect")
    os.environ["CUDA_VISIBLE_DEVICES"] = value


def use_portable_cpu_kernels() -> None:
    """Keep TensorFlow's own oneDNN kernel rewrites off unless the user set TF_ENABLE_ONEDNN_OPTS.

    TensorFlow turns them on by itself only on CPUs with AVX-512 VNNI, BF16 or AMX, where they change
    the rounding of its non-XLA kernels ("slightly different numerical results") and print a notice that
    no log level hides.  Off, every x86 CPU runs the same kernels.  The simulation and readout run as XLA
    programs, which these rewrites never touch, so this costs them nothing.  Must run before TensorFlow
    is imported; `import lsm_core` calls it.
    """
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


QUIET_LEVEL = "2"       # TensorFlow's C++ log: INFO and WARNING off (start-up notices), errors still shown


def quiet_tensorflow(verbose: bool = False) -> None:
    """Silence TensorFlow's C++ start-up chatter (oneDNN and CPU-feature notices, absl's warning) for the
    scripts and commands, before TensorFlow is imported.  A TF_CPP_MIN_LOG_LEVEL the user set is kept, and
    `verbose` (the --verbose option) leaves TensorFlow's own default (everything)."""
    if "TF_CPP_MIN_LOG_LEVEL" not in os.environ and not verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = QUIET_LEVEL


def _gpu_label(tf, device, asked_id: str) -> str:
    name = None
    get_details = getattr(tf.config.experimental, "get_device_details", None)
    if get_details is not None:
        try:
            name = get_details(device).get("device_name")
        except Exception:          # details are best effort; never fail a run over a label
            name = None
    return f"GPU:{asked_id} ({name})" if name else f"GPU:{asked_id}"


def _banner(lines) -> str:
    bar = "!" * 100
    return "\n".join([bar, *(f"!!! {line}" for line in lines), bar])


def check_devices(gpu_answer: str, require_gpu: bool = False, log=None) -> list:
    """Compare the GPUs TensorFlow sees with the GPU answer; return the devices used.

    Enables memory growth on every visible GPU.  A GPU asked for but missing is a loud warning
    through `log` (a callable taking one string; default: print to stderr) and the run goes on with
    what is there (the CPU when no GPU is) -- or a UserError when `require_gpu`.
    Returns readable names, e.g. ["CPU"] or ["GPU:0 (NVIDIA H100 80GB HBM3)"].
    """
    import tensorflow as tf

    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:       # already initialised: memory growth can no longer change
            pass
    if gpu_answer == "cpu":
        return ["CPU"]
    asked = gpu_answer.split(",")
    # CUDA renumbers the visible devices 0, 1, ... in the order of CUDA_VISIBLE_DEVICES.
    used = [_gpu_label(tf, device, asked_id) for device, asked_id in zip(gpus, asked)]
    if len(gpus) < len(asked):
        missing = asked[len(gpus):]
        fallback = ", ".join(used) if used else "the CPU"
        problem = (f"GPU {','.join(missing)} asked for (answer {gpu_answer!r}) but TensorFlow "
                   f"finds {len(gpus)} of the {len(asked)} GPUs asked for.")
        if require_gpu:
            raise UserError(f"{problem} --require-gpu was given, so the run stops. Check "
                            f"nvidia-smi, the GPU indices, and that TensorFlow was installed "
                            f"with GPU support (pip install 'tensorflow[and-cuda]').")
        log(_banner(["WARNING: A GPU WAS ASKED FOR BUT IS NOT AVAILABLE.", problem,
                     f"The run continues on {fallback}, which can be much slower.",
                     "Use --require-gpu to make this an error instead."]))
    return used or ["CPU"]


def tensorflow_versions() -> dict:
    """Versions of TensorFlow, NumPy, Python and the platform (for params.json)."""
    import numpy as np
    import tensorflow as tf

    versions = {"tensorflow": tf.__version__, "numpy": np.__version__,
                "python": platform.python_version(), "platform": platform.platform()}
    try:
        build = tf.sysconfig.get_build_info()
        for key in ("cuda_version", "cudnn_version"):
            if build.get(key):
                versions[key] = str(build[key])
    except Exception:              # not every build exposes build info
        pass
    return versions
