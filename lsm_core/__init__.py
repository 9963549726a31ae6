"""NALSM toolkit: fast, faithful TensorFlow 2 liquid state machines (NeurIPS 2021 NALSM benchmarks).

The public API is small and stable::

    from lsm_core import Network, simulate
    net = Network.generate(dims=(10, 10, 10), n_input=784, seed=1)
    res = simulate(net, probabilities, rule="static", steps=250, weight_scale=1.0)

TensorFlow is imported lazily (on first use of `simulate`), so that command-line tools can choose the
GPU through CUDA_VISIBLE_DEVICES before TensorFlow starts.  Importing the package keeps TensorFlow's
CPU-specific oneDNN rewrites off (`engines.devices.use_portable_cpu_kernels`) unless TF_ENABLE_ONEDNN_OPTS
is set.
"""
from lsm_core.engines.devices import use_portable_cpu_kernels

use_portable_cpu_kernels()      # before anything below can import TensorFlow

from lsm_core.model.network import Network  # noqa: E402

__all__ = ["Network", "simulate", "SimResult"]
__version__ = "0.1.0"


def __getattr__(name):
    if name in ("simulate", "SimResult"):
        from lsm_core.engines import simulator
        return getattr(simulator, name)
    raise AttributeError(f"module 'lsm_core' has no attribute {name!r}")
