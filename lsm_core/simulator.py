"""The compiled leaky integrate-and-fire liquid (SPEC 3.2-3.3).

Maths first: `spike_and_reset`, `synaptic_kernel` and `integrate` are small pure functions of an
explicit `LiquidState`, one step in, one step out, in exactly the step order of SPEC 3.2.  Then the
plumbing: `LiquidSimulator` composes them into one per-batch time loop that TensorFlow compiles
(XLA) into a single graph, so nothing happens in Python per millisecond.  `simulate` is the small
public entry point of SPEC 2.2.

Shapes: B = batch rows, N = all neurons (reservoir then input), N_res = reservoir neurons,
n_in = input neurons, T = steps (1 step = 1 ms).  Neuron order: excitatory, inhibitory, input.
"""
from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import NamedTuple, Optional, Sequence

import numpy as np
import tensorflow as tf

from lsm_core.config import PAPER
from lsm_core.network import Network
from lsm_core.randomness import pixel_codes_np, sample_keys, step_pixel_uniform_tf

RULES = ("static", "stdp", "nalsm", "apstdp")
PHASES = ("sample", "init")
AVAILABLE_RULES = ("static",)


# ----------------------------------------------------------------------------------------------
# State and parameters
# ----------------------------------------------------------------------------------------------

class LiquidState(NamedTuple):
    """Per-neuron state of a batch of liquids, all float32 [B, N]."""

    membrane: tf.Tensor      # V
    spikes: tf.Tensor        # S of the last step (0/1)
    refractory: tf.Tensor    # R, counts down; a neuron with R > 0 cannot spike
    since_spike: tf.Tensor   # s, ms since the neuron's last spike, in [0, cap]


class NeuronParams(NamedTuple):
    """Per-neuron constants as float32 tensors [N] (broadcast over the batch)."""

    tau_v: tf.Tensor
    v_thresh: tf.Tensor
    bias: tf.Tensor
    t_refrac: tf.Tensor
    tau_syn: tf.Tensor
    since_spike_cap: float


def initial_state(batch: int, n_neurons: int, since_spike_init: float = PAPER.neuron.since_spike_init
                  ) -> LiquidState:
    """State at the start of every sample: V = S = R = 0, s = 20 ms."""
    zeros = tf.zeros([batch, n_neurons], tf.float32)
    return LiquidState(zeros, zeros, zeros, tf.fill([batch, n_neurons], tf.constant(since_spike_init, tf.float32)))


# ----------------------------------------------------------------------------------------------
# One step: the maths (SPEC 3.2)
# ----------------------------------------------------------------------------------------------

def spike_and_reset(state: LiquidState, p: NeuronParams):
    """Steps 1, 2 and 4: who spikes, reset of their membrane and of their time since last spike.

    Returns (spikes, membrane, since_spike), each float32 [B, N].
    """
    free = 1.0 - tf.clip_by_value(state.refractory, 0.0, 1.0)
    spikes = tf.cast(state.membrane * free >= p.v_thresh, tf.float32)
    membrane = state.membrane * (1.0 - spikes)
    since_spike = tf.where(spikes > 0.0, tf.zeros_like(state.since_spike), state.since_spike)
    return spikes, membrane, since_spike


def synaptic_kernel(since_spike, tau_syn):
    """exp(-s / tau_u) / tau_u: the drive of each presynaptic neuron, [B, N]; 1 at its spike."""
    return tf.exp(-since_spike / tau_syn) / tau_syn


def integrate(spikes, membrane, since_spike, refractory, current, p: NeuronParams) -> LiquidState:
    """Steps 5-7: leaky integration of `current` [B, N], time since spike, refractory counter."""
    membrane = membrane + current + p.bias - membrane / p.tau_v
    since_spike = tf.minimum(since_spike + 1.0, p.since_spike_cap)
    refractory = (refractory - 1.0) * (1.0 - spikes) + p.t_refrac * spikes
    return LiquidState(membrane, spikes, refractory, since_spike)


def shared_weight_current(kernel, weights_pre_post):
    """Synaptic current into the reservoir with weights shared by all rows.

    kernel [B, N] @ weights_pre_post [N, N_res] -> [B, N_res].  A dense matrix product: on CPUs
    and GPUs it beats a sparse product at the densities of these liquids (inputs: 15 %).
    """
    return tf.matmul(kernel, weights_pre_post)


# ----------------------------------------------------------------------------------------------
# The compiled time loop: the plumbing
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SimParams:
    """Constants of SPEC 3 that `simulate(params=...)` may override, by the SPEC's names."""

    lr: float = PAPER.plasticity.lr
    lr_decay: float = PAPER.plasticity.lr_decay
    w_max: float = PAPER.plasticity.w_max
    input_current: float = PAPER.neuron.input_current
    astro_w: Optional[float] = None
    astro_tau: float = PAPER.plasticity.astro_tau
    astro_bias_offset: float = PAPER.plasticity.astro_bias_offset
    rate_threshold: Optional[float] = None
    rate_range: Optional[float] = None
    calcium_tau: float = PAPER.plasticity.calcium_tau

    @classmethod
    def from_overrides(cls, overrides: Optional[dict]) -> "SimParams":
        overrides = dict(overrides or {})
        unknown = sorted(set(overrides) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown simulation parameter(s) {unknown}; known: "
                             f"{sorted(cls.__dataclass_fields__)}")
        return replace(cls(), **overrides)


def _on(device: Optional[str]):
    """tf.device(device), or no placement at all for None."""
    return tf.device(device) if device else contextlib.nullcontext()


def synapse_weights(net: Network, weight_scale: Optional[float]) -> np.ndarray:
    """Weights of the synapse list, float32 [n_syn]: the network's, or sign * weight_scale."""
    syn = net.synapses()
    if weight_scale is None:
        return net.W[syn.post, syn.pre].astype(np.float32)
    return (np.sign(syn.sign) * np.float32(weight_scale)).astype(np.float32)


class LiquidSimulator:
    """A liquid with fixed weights, compiled once and reused for every batch.

    `run(...)` simulates B independent samples for T steps inside one XLA-compiled TensorFlow
    graph and returns the reservoir spike counts and, for the rows asked for, the full rasters.
    """

    def __init__(self, net: Network, weights: np.ndarray, params: SimParams = SimParams(), jit: bool = True,
                 devices: Optional[Sequence[str]] = None):
        syn = net.synapses()
        if weights.shape != (len(syn.post),):
            raise ValueError(f"weights must have shape [n_syn] = [{len(syn.post)}], got {weights.shape}")
        self.net = net
        self.params = params
        self.n_neurons = net.n_neurons
        self.n_res = net.n_res
        self.n_input = net.n_input
        dense = np.zeros((net.n_neurons, net.n_res), np.float32)   # [pre, post]
        dense[syn.pre, syn.post] = weights
        # data parallelism: each device simulates a contiguous slice of the batch with its own copy
        self.devices = list(devices) if devices else [None]
        self._weights_pre_post = {}
        for device in self.devices:
            with _on(device):
                self._weights_pre_post[device] = tf.constant(dense)
        self._neuron = NeuronParams(
            *(tf.constant(np.asarray(a, np.float32)) for a in
              (net.tau_v, net.v_thresh, net.bias, net.t_refrac, net.tau_syn)),
            since_spike_cap=float(PAPER.neuron.since_spike_cap))
        self._pixel_codes = tf.constant(pixel_codes_np(net.n_input))
        self._input_current = tf.constant(params.input_current, tf.float32)
        self._loop = tf.function(self._time_loop, jit_compile=jit, reduce_retracing=True)

    # -- the loop ---------------------------------------------------------------------------
    def _input_spikes(self, inputs, keys, t, event_mode: bool):
        if event_mode:                       # inputs: [B, T, n_in] 0/1
            return tf.cast(inputs[:, t, :], tf.float32)
        uniform = step_pixel_uniform_tf(keys, t, self._pixel_codes)   # inputs: [B, n_in] probabilities
        return tf.cast(uniform < inputs, tf.float32)

    def _time_loop(self, inputs, keys, record_rows, weights_pre_post, steps: int, event_mode: bool):
        batch = tf.shape(inputs)[0]
        p = self._neuron
        state = initial_state(batch, self.n_neurons)
        counts = tf.zeros([batch, self.n_res], tf.float32)
        raster = tf.TensorArray(tf.bool, size=steps)
        for t in tf.range(steps):
            spikes, membrane, since_spike = spike_and_reset(state, p)
            counts += spikes[:, : self.n_res]
            raster = raster.write(t, tf.gather(spikes, record_rows) > 0.0)
            reservoir_current = shared_weight_current(synaptic_kernel(since_spike, p.tau_syn), weights_pre_post)
            input_current = self._input_current * self._input_spikes(inputs, keys, t, event_mode)
            current = tf.concat([reservoir_current, input_current], axis=1)
            state = integrate(spikes, membrane, since_spike, state.refractory, current, p)
        return counts, tf.transpose(raster.stack(), [1, 0, 2])

    def run(self, inputs: np.ndarray, keys: np.ndarray, steps: Optional[int] = None,
            record_rows=()) -> tuple[np.ndarray, np.ndarray]:
        """Simulate one batch.

        inputs: float32 [B, n_in] spike probabilities per ms (image mode) or 0/1 [B, T, n_in]
        input spikes (event mode); keys: uint32 [B] per-sample random keys (image mode);
        steps: T (event mode: defaults to the given T); record_rows: rows whose rasters to keep.
        Returns counts int32 [B, N_res] and rasters bool [len(record_rows), T, N].
        """
        inputs = np.asarray(inputs)
        event_mode = inputs.ndim == 3
        if inputs.shape[-1] != self.n_input:
            raise ValueError(f"inputs have {inputs.shape[-1]} input channels, the liquid has {self.n_input}")
        if event_mode:
            steps = inputs.shape[1] if steps is None else int(steps)
            if steps > inputs.shape[1]:
                raise ValueError(f"steps={steps} but only {inputs.shape[1]} ms of input spikes were given")
            inputs = inputs[:, :steps].astype(np.uint8, copy=False)
        else:
            if steps is None:
                raise ValueError("image mode needs steps= (the duration in ms)")
            inputs = inputs.astype(np.float32, copy=False)
        keys = np.asarray(keys, np.uint32).reshape(-1)
        record_rows = np.asarray(record_rows, np.int64).reshape(-1)
        bounds = np.linspace(0, len(keys), len(self.devices) + 1).round().astype(int)

        def run_part(device, start, stop):
            local = np.nonzero((record_rows >= start) & (record_rows < stop))[0]   # rasters in this slice
            with _on(device):
                counts, raster = self._loop(tf.constant(inputs[start:stop]), tf.constant(keys[start:stop]),
                                            tf.constant((record_rows[local] - start).astype(np.int32)),
                                            self._weights_pre_post[device], int(steps), event_mode)
                return local, counts.numpy().astype(np.int32), raster.numpy()

        if len(self.devices) == 1:
            results = [run_part(self.devices[0], 0, len(keys))]
        else:                 # one host thread per device; TensorFlow releases the GIL while it runs
            with ThreadPoolExecutor(len(self.devices)) as pool:
                results = list(pool.map(run_part, self.devices, bounds[:-1], bounds[1:]))
        raster = np.zeros((len(record_rows), steps, self.n_neurons), bool)
        for local, _, part_raster in results:
            raster[local] = part_raster
        return np.concatenate([counts for _, counts, _ in results]), raster


# ----------------------------------------------------------------------------------------------
# Public entry point (SPEC 2.2)
# ----------------------------------------------------------------------------------------------

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


def simulate(net: Network, inputs, rule: str = "static", phase: str = "sample",
             weight_scale: Optional[float] = None, params: Optional[dict] = None, seed: int = 0,
             steps: Optional[int] = None) -> SimResult:
    """Simulate a batch of samples on `net` and return every spike (SPEC 2.2).

    inputs: float [B, n_input] per-ms spike probabilities (image mode, `steps` = duration in ms)
    or 0/1 [B, T, n_input] input spikes (event mode).  rule: "static" (fixed weights); the plastic
    rules "stdp", "nalsm" and "apstdp" are not part of this version.  weight_scale: replace every
    synapse magnitude by this value, keeping its sign.  seed: keys the Bernoulli input draws (row b
    uses the key of sample b of split "simulate").
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
    if rule not in AVAILABLE_RULES:
        raise NotImplementedError(f"rule {rule!r} (plasticity) is not available in this version; "
                                  f"available: {AVAILABLE_RULES}")
    sim_params = SimParams.from_overrides(params)
    weights = synapse_weights(net, weight_scale)
    simulator = LiquidSimulator(net, weights, sim_params)
    inputs = np.asarray(inputs)
    keys = sample_keys(seed, "simulate", np.arange(inputs.shape[0]))
    counts, raster = simulator.run(inputs, keys, steps=steps, record_rows=np.arange(inputs.shape[0]))
    syn = net.synapses()
    return SimResult(spikes=raster, counts=counts, synapse_weights=weights[None, :],
                     post=syn.post, pre=syn.pre, n_neurons=net.n_neurons, phase=phase)
