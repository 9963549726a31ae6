"""`simulate`, the small public entry point (docs/model.md#simulating-from-python), and the choice of
engine behind it.

Two engines simulate the same liquid step for step: "xla" (`xla.py`, compiled TensorFlow graphs, the one
for GPUs) and "events" (`event_driven.py`, numba, touching only the synapses next to a spike: the one
for CPUs).  `liquid_simulator` and `plastic_simulator` build either behind the same `run` interface;
each engine is imported only when chosen, so the event-driven engine never starts TensorFlow.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from lsm_core.config import ENGINES
from lsm_core.engines.interface import PHASES, RULES, SimParams, synapse_weights
from lsm_core.model.network import Network
from lsm_core.model.randomness import sample_keys


@dataclass
class SimResult:
    """Result of `simulate`.

    spikes bool [B, T, N]; counts int32 [B, N_res]; synapse_weights float32 [B or 1, n_syn] (final
    weights of the synapse list, one row when shared by the batch); astro [B, T] and calcium [B, N]
    where the rule has them, else None.
    """

    spikes: np.ndarray
    counts: np.ndarray
    synapse_weights: np.ndarray
    post: np.ndarray
    pre: np.ndarray
    n_neurons: int
    phase: str = "sample"
    astro: Optional[np.ndarray] = None
    calcium: Optional[np.ndarray] = None

    @property
    def weights(self) -> np.ndarray:
        """Final weights as dense [B, N, N] (rows post, columns pre), [1, N, N] for the init phase
        (one stream); a read-only broadcast view when the batch shares one set of weights."""
        rows = self.synapse_weights.shape[0]
        dense = np.zeros((rows, self.n_neurons, self.n_neurons), np.float32)
        dense[:, self.post, self.pre] = self.synapse_weights
        batch = 1 if self.phase == "init" else self.spikes.shape[0]
        return dense if rows == batch else np.broadcast_to(dense, (batch,) + dense.shape[1:])


def resolve_engine(engine: str, gpu: Optional[bool] = None) -> str:
    """The engine that `engine` names: "xla" or "events" as given; "auto" is "events" on CPUs and
    "xla" where TensorFlow sees a GPU (`gpu`: whether one will be used; None: ask TensorFlow)."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if engine != "auto":
        return engine
    if gpu is None:
        import tensorflow as tf
        gpu = bool(tf.config.list_logical_devices("GPU"))
    return "xla" if gpu else "events"


def _event_engine():
    """The event-driven engine's module; a UserError naming the fix when numba is missing."""
    try:
        from lsm_core.engines import event_driven
    except ImportError as exc:
        from lsm_core.errors import UserError
        raise UserError(f"the event-driven engine needs numba, which cannot be imported ({exc}). Install the "
                        f"requirements again (pip install -r requirements.txt) or choose --engine xla.") from None
    return event_driven


def liquid_simulator(net: Network, weights: np.ndarray, params: SimParams = SimParams(), engine: str = "xla",
                     devices: Optional[Sequence[str]] = None):
    """A fixed-weight simulator of `engine` ("xla": `LiquidSimulator`, "events": the event-driven one;
    the devices apply to XLA only).  Both have the same `run`."""
    if resolve_engine(engine) == "events":
        return _event_engine().EventLiquidSimulator(net, weights, params)
    from lsm_core.engines.xla import LiquidSimulator
    return LiquidSimulator(net, weights, params, devices=devices)


def plastic_simulator(net: Network, weights: np.ndarray, rule: str, phase: str, params: SimParams = SimParams(),
                      engine: str = "xla", reference_batch_quirk: bool = False,
                      devices: Optional[Sequence[str]] = None, final_state: bool = True):
    """A learning simulator of `engine` (`PlasticSimulator` or the event-driven one); same `run`.
    `final_state=False`: a sample-phase `run` returns no final weights, trace and calcium (None)."""
    if resolve_engine(engine) == "events":
        return _event_engine().EventPlasticSimulator(net, weights, rule, phase, params,
                                                     reference_batch_quirk=reference_batch_quirk,
                                                     final_state=final_state)
    from lsm_core.engines.xla import PlasticSimulator
    return PlasticSimulator(net, weights, rule, phase, params, reference_batch_quirk=reference_batch_quirk,
                            devices=devices, final_state=final_state)


@functools.lru_cache(maxsize=8)
def _simulator_for(net: Network, weight_scale, rule: str, phase: str, params: SimParams, engine: str):
    """Compiled simulators are kept for repeated `simulate` calls on the same liquid and settings."""
    weights = synapse_weights(net, weight_scale)
    if rule == "static":
        return liquid_simulator(net, weights, params, engine)
    return plastic_simulator(net, weights, rule, phase, params, engine)


def simulate(net: Network, inputs, rule: str = "static", phase: str = "sample",
             weight_scale: Optional[float] = None, params: Optional[dict] = None, seed: int = 0,
             steps: Optional[int] = None, engine: str = "auto") -> SimResult:
    """Simulate a batch of samples on `net` and return every spike (docs/model.md#simulating-from-python).

    inputs: float [B, n_input] per-ms spike probabilities (image mode, `steps` = duration in ms)
    or 0/1 [B, T, n_input] input spikes (event mode).  rule: "static" (fixed weights), "stdp",
    "nalsm" (needs params["astro_w"]) or "apstdp" (needs params["rate_threshold"] and
    params["rate_range"]).  phase: "sample" (independent rows) or "init" (the rows are consecutive
    snapshots of one stream).  weight_scale: replace every synapse magnitude by this value, keeping
    its sign.  seed: keys the Bernoulli input draws (row b uses the key of sample b of split
    "simulate").  engine: "xla" (compiled dense tensors, for GPUs), "events" (event-driven, for CPUs)
    or "auto" (events on CPUs, xla where TensorFlow sees a GPU); the results agree to rounding.
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
    simulator = _simulator_for(net, weight_scale, rule, phase, SimParams.from_overrides(params),
                               resolve_engine(engine))
    inputs = np.asarray(inputs)
    keys = sample_keys(seed, "simulate", np.arange(inputs.shape[0]))
    syn = net.synapses()
    result = dict(post=syn.post, pre=syn.pre, n_neurons=net.n_neurons, phase=phase)
    if rule == "static":
        counts, raster = simulator.run(inputs, keys, steps=steps, record_rows=np.arange(inputs.shape[0]))
        return SimResult(spikes=raster, counts=counts,
                         synapse_weights=synapse_weights(net, weight_scale)[None, :], **result)
    run = simulator.run(inputs, keys, steps=steps)
    return SimResult(spikes=run.spikes, counts=run.counts, synapse_weights=run.weights,
                     astro=run.astro if rule == "nalsm" else None,
                     calcium=run.calcium if rule == "apstdp" else None, **result)
