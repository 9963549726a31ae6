"""The XLA engine: the liquid's time loops compiled by TensorFlow into single graphs
(docs/model.md#one-millisecond-step-by-step, docs/model.md#input-encodings).

The maths of one step lives in `lsm_core.model.neuron` (membrane, spikes, kernel, current) and
`lsm_core.model.plasticity` (the learning rules); this module is the plumbing that composes them:
`LiquidSimulator` (fixed weights, shared by the batch: one dense matrix product per step) and
`PlasticSimulator` (weights that learn, one copy per row, in the `SynapseTable` layout).  Nothing
happens in Python per millisecond.  This is the engine for GPUs; `event_driven.py` holds the one for
CPUs, and `simulator.py` chooses between them behind the same `run` interface.

Shapes: B = batch rows, N = all neurons (reservoir then input), N_res = reservoir neurons,
n_in = input neurons, T = steps (1 step = 1 ms).  Neuron order: excitatory, inhibitory, input.
"""
from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple, Optional, Sequence

import numpy as np
import tensorflow as tf

from lsm_core.config import PAPER
from lsm_core.engines.interface import (
    PlasticRun,
    astro_mask_of,
    SimParams,
    StreamCarry,
    check_inputs,
    check_plastic_settings,
    learning_rows,
    record_rows_of,
)
from lsm_core.model import plasticity as rules
from lsm_core.model.network import EXC, INH, Network
from lsm_core.model.neuron import (
    NeuronParams,
    initial_state,
    integrate,
    per_row_weight_current,
    shared_weight_current,
    spike_and_reset,
    synaptic_kernel,
)
from lsm_core.model.randomness import pixel_codes_np, step_pixel_uniform_tf


def _padded(shape, rows, slots, values, empty, dtype) -> np.ndarray:
    """An array of `shape` filled with `empty`, and `values` at (rows, slots)."""
    out = np.full(shape, empty, dtype)
    out[rows, slots] = values
    return out


@dataclass(frozen=True)
class SynapseGroup:
    """Rows of reservoir neurons with similar in-degree: row r lists the presynaptic neurons of
    neuron `rows[r]`, padded to the group's largest in-degree D with empty slots (weight 0,
    bounds [0, 0])."""

    rows: np.ndarray      # int32 [n]: the reservoir neurons of this group
    pre: np.ndarray       # int32 [n, D]: presynaptic neuron of each slot (0 in empty slots)
    synapse: np.ndarray   # int64 [n, D]: index of the slot's synapse in the synapse list (-1: empty)
    sign: np.ndarray      # float32 [n, D]: +1 excitatory or input pre, -1 inhibitory, 0 empty
    lower: np.ndarray     # float32 [n, D]: weight bounds by presynaptic class
    upper: np.ndarray


@dataclass(frozen=True)
class SynapseTable:
    """Synapses grouped by postsynaptic neuron ("sliced ELL"): the reservoir neurons, sorted by
    in-degree, form `groups` of rows padded to the group's own largest in-degree.

    This layout makes every per-synapse operation a gather along the presynaptic index and a sum
    along the row, with no scatter; postsynaptic values broadcast along the row.  Grouping by
    in-degree keeps the padding small (about 10 % in four groups instead of about 40 % in one).
    """

    groups: tuple
    order: np.ndarray     # int32 [N_res]: the reservoir neurons in table order (groups one after another)
    inverse: np.ndarray   # int32 [N_res]: position of each reservoir neuron in `order`
    n_syn: int

    @classmethod
    def build(cls, net: Network, w_max: float, n_groups: int = 4) -> "SynapseTable":
        syn = net.synapses()                                  # sorted by (post, pre)
        degree = np.bincount(syn.post, minlength=net.n_res)
        starts = np.concatenate([[0], np.cumsum(degree)[:-1]])
        slot = np.arange(len(syn.post)) - starts[syn.post]
        pre_class = np.asarray(syn.pre_class)
        order = np.argsort(degree, kind="stable").astype(np.int32)
        position = np.empty(net.n_res, np.int32)
        position[order] = np.arange(net.n_res, dtype=np.int32)
        groups = []
        for rows in np.array_split(order, min(n_groups, net.n_res)):
            width = max(int(degree[rows].max(initial=0)), 1)
            local = np.full(net.n_res, -1)
            local[rows] = np.arange(len(rows))
            mine = local[syn.post] >= 0
            r, d = local[syn.post[mine]], slot[mine]

            shape = (len(rows), width)
            cls_mine = pre_class[mine]
            groups.append(SynapseGroup(
                rows=rows.astype(np.int32), pre=_padded(shape, r, d, syn.pre[mine], 0, np.int32),
                synapse=_padded(shape, r, d, np.nonzero(mine)[0], -1, np.int64),
                sign=_padded(shape, r, d, np.where(cls_mine == INH, -1.0, 1.0), 0.0, np.float32),
                lower=_padded(shape, r, d, np.where(cls_mine == EXC, 0.0, -w_max), 0.0, np.float32),
                upper=_padded(shape, r, d, np.where(cls_mine == INH, 0.0, w_max), 0.0, np.float32)))
        return cls(groups=tuple(groups), order=order, inverse=position, n_syn=len(syn.post))

    def to_table(self, weights: np.ndarray) -> tuple:
        """[..., n_syn] synapse-list weights -> one [..., n, D] array per group."""
        weights = np.asarray(weights, np.float32)
        out = []
        for group in self.groups:
            filled = weights[..., np.maximum(group.synapse, 0)]
            out.append(np.where(group.synapse >= 0, filled, np.float32(0.0)).astype(np.float32))
        return tuple(out)

    def to_list(self, tables) -> np.ndarray:
        """One [..., n, D] array per group -> [..., n_syn] in the network's synapse order."""
        lead = np.asarray(tables[0]).shape[:-2]
        out = np.zeros(lead + (self.n_syn,), np.float32)
        for group, table in zip(self.groups, tables):
            used = group.synapse >= 0
            out[..., group.synapse[used]] = np.asarray(table)[..., used]
        return out


# ----------------------------------------------------------------------------------------------
# The compiled time loop: the plumbing
# ----------------------------------------------------------------------------------------------

def _on(device: Optional[str]):
    """tf.device(device), or no placement at all for None."""
    return tf.device(device) if device else contextlib.nullcontext()


def _over_devices(devices: Sequence, rows: int, run_part) -> list:
    """Data parallelism: [run_part(device, start, stop)] for contiguous slices of `rows` rows, one
    per device (at most one device per row), in row order.

    Rows must be independent.  Several devices: one host thread each, since TensorFlow releases the
    GIL while a compiled loop runs; one device: a plain call, no thread.
    """
    devices = list(devices)[: max(rows, 1)]
    if len(devices) == 1:
        return [run_part(devices[0], 0, rows)]
    bounds = np.linspace(0, rows, len(devices) + 1).round().astype(int)
    with ThreadPoolExecutor(len(devices)) as pool:
        return list(pool.map(run_part, devices, bounds[:-1], bounds[1:]))


def _neuron_params(net: Network) -> NeuronParams:
    return NeuronParams(*(tf.constant(np.asarray(a, np.float32)) for a in
                          (net.tau_v, net.v_thresh, net.bias, net.t_refrac, net.tau_syn)),
                        since_spike_cap=float(PAPER.neuron.since_spike_cap))


def _input_spikes(inputs, keys, t, event_mode: bool, pixel_codes):
    """This step's 0/1 input spikes [B, n_in]: given (event mode, inputs [B, T, n_in]) or Bernoulli
    draws with the per-pixel probabilities (image mode, inputs [B, n_in], keys uint32 [B])."""
    if event_mode:
        return tf.cast(inputs[:, t, :], tf.float32)
    return tf.cast(step_pixel_uniform_tf(keys, t, pixel_codes) < inputs, tf.float32)


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
        self._neuron = _neuron_params(net)
        self._pixel_codes = tf.constant(pixel_codes_np(net.n_input))
        self._loop = tf.function(self._time_loop, jit_compile=jit, reduce_retracing=True)

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
            input_current = self.params.input_current * _input_spikes(inputs, keys, t, event_mode,
                                                                      self._pixel_codes)
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
        inputs, steps, event_mode = check_inputs(inputs, steps, self.n_input)
        keys = np.asarray(keys, np.uint32).reshape(-1)
        record_rows = np.asarray(record_rows, np.int64).reshape(-1)

        def run_part(device, start, stop):
            local = np.nonzero((record_rows >= start) & (record_rows < stop))[0]   # rasters in this slice
            with _on(device):
                counts, raster = self._loop(tf.constant(inputs[start:stop]), tf.constant(keys[start:stop]),
                                            tf.constant((record_rows[local] - start).astype(np.int32)),
                                            self._weights_pre_post[device], int(steps), event_mode)
                return local, counts.numpy().astype(np.int32), raster.numpy()

        results = _over_devices(self.devices, len(keys), run_part)
        raster = np.zeros((len(record_rows), steps, self.n_neurons), bool)
        for local, _, part_raster in results:
            raster[local] = part_raster
        return np.concatenate([counts for _, counts, _ in results]), raster


class _GroupConstants(NamedTuple):
    """A `SynapseGroup` as TensorFlow constants."""

    rows: tf.Tensor
    pre: tf.Tensor
    sign: tf.Tensor
    lower: tf.Tensor
    upper: tf.Tensor


class _TableConstants(NamedTuple):
    """The `SynapseTable` as the time loop reads it, one copy on each device: an argument of the
    compiled loop rather than a captured constant, so that each device reads its own copy."""

    groups: tuple         # one _GroupConstants per row group
    inverse: tf.Tensor    # int32 [N_res]


class XlaProgram(NamedTuple):
    """A compiled loop as XLA receives it: `hlo` (a serialized HloModuleProto, bytes) and the values of
    its parameters in order (the loop's tensor arguments, then the constants it captures)."""

    hlo: bytes
    arguments: list


class PlasticSimulator:
    """A liquid whose weights learn ("stdp", "nalsm" or "apstdp"), compiled once and reused.

    phase "sample": the B rows are independent liquids that all start from the given weights, with
    the per-ms decays of docs/model.md#the-decays for "nalsm" and "stdp".  phase "init": the rows are
    consecutive snapshots of one stream (batch 1), simulated one after another in the same graph:
    weights, trace and calcium carry over; neuron state, learning rate and astrocyte restart with every
    snapshot.  `reference_batch_quirk` (sample phase): only row 0 of each batch learns, as in the
    paper's implementation of LSM+STDP (docs/model.md#known-defects-of-the-reference-implementation);
    the other rows run with the starting weights.
    `n_groups`: row groups of the synapse table, a speed setting the dynamics do not depend on (default:
    4 in the sample phase, 1 in the init phase, the faster choice for each on a 2-core CPU).
    `devices` (as for `LiquidSimulator`): the sample phase splits the rows over them; the init phase,
    one stream, runs on the first.  None: no placement.  `final_state=False` (sample phase): `run`
    returns no final weights, trace and calcium (None), and copies none from the device.
    """

    def __init__(self, net: Network, weights: np.ndarray, rule: str, phase: str,
                 params: SimParams = SimParams(), jit: bool = True, reference_batch_quirk: bool = False,
                 n_groups: int | None = None, devices: Optional[Sequence[str]] = None, final_state: bool = True):
        check_plastic_settings(rule, phase, params)
        self.final_state = final_state or phase == "init"   # the init phase's state is what it computes
        self.rule, self.phase, self.params = rule, phase, params
        self.reference_batch_quirk = reference_batch_quirk and phase == "sample"
        self.n_neurons, self.n_res, self.n_input = net.n_neurons, net.n_res, net.n_input
        if n_groups is None:        # batch 1 is latency-bound: one group (fewer ops) beats less padding there
            n_groups = 4 if phase == "sample" else 1
        self.table = SynapseTable.build(net, params.w_max, n_groups)
        # sample-phase rows are independent liquids: each device simulates a contiguous slice of them
        self.devices = (list(devices) if phase == "sample" else list(devices)[:1]) if devices else [None]
        self._table = {}
        for device in self.devices:
            with _on(device):
                self._table[device] = _TableConstants(
                    groups=tuple(_GroupConstants(*(tf.constant(a) for a in (g.rows, g.pre, g.sign, g.lower, g.upper)))
                                 for g in self.table.groups),
                    inverse=tf.constant(self.table.inverse))
        self.weights = np.asarray(weights, np.float32).reshape(-1)      # default starting weights
        self._neuron = _neuron_params(net)
        self._pixel_codes = tf.constant(pixel_codes_np(net.n_input))
        self._astro_mask = tf.constant(astro_mask_of(params, net.n_res, net.n_input))
        self._loop = tf.function(self._time_loop, jit_compile=jit)   # static shapes: one trace per size

    def _fresh_rates(self, learns):
        """Learning rate and astrocyte at the start of every sample, each [B, 1, 1] (broadcasts
        against [B, n, D]): eta0 (0 in rows with learns [B] = 0), A = eta0, w_A, b_A."""
        p = self.params
        ones = tf.ones_like(learns)[:, None, None]
        astro_w = 0.0 if p.astro_w is None else p.astro_w
        return dict(lr=p.lr * learns[:, None, None], astro=p.lr * ones, astro_w=astro_w * ones,
                    astro_bias=p.lr * (1.0 + p.astro_bias_offset) * ones)

    @staticmethod
    def _reservoir_current(weights, kernel, table: _TableConstants):
        """Synaptic current into the reservoir [B, N_res] from the per-row weights (one [B, n, D]
        tensor per group of `table`) and the presynaptic kernels [B, N]."""
        parts = [per_row_weight_current(tf.gather(kernel, g.pre, axis=1), w) for g, w in zip(table.groups, weights)]
        return tf.gather(tf.concat(parts, axis=1), table.inverse, axis=1)

    def _step_weights(self, plastic: rules.PlasticState, spikes, after, table: _TableConstants
                      ) -> rules.PlasticState:
        """Steps 8-11 of docs/model.md#one-millisecond-step-by-step (the calcium of step 3 is already in
        `plastic`).

        `after` is a float32 zero computed from this step's current: adding it to the lower bounds
        makes the update come after the current has read the old weights, so XLA updates the
        weights in place instead of copying them every step.
        """
        p, c = self.params, PAPER.plasticity
        weights = []
        for g, w in zip(table.groups, plastic.weights):
            post_spikes = tf.gather(spikes, g.rows, axis=1)[:, :, None]       # [B, n, 1]
            post_trace = tf.gather(plastic.trace, g.rows, axis=1)[:, :, None]
            causal, anti_causal = rules.pair_terms(
                pre_trace=tf.gather(plastic.trace, g.pre, axis=1), post_spikes=post_spikes,
                post_trace=post_trace, pre_spikes=tf.gather(spikes, g.pre, axis=1))
            if self.rule == "stdp":
                change = rules.stdp_change(causal, anti_causal, plastic.lr, g.sign)
            elif self.rule == "nalsm":
                change = rules.nalsm_change(causal, anti_causal, plastic.lr, plastic.astro, g.sign)
            else:
                post_calcium = tf.gather(plastic.calcium, g.rows, axis=1)[:, :, None]
                change = rules.apstdp_change(causal, anti_causal, plastic.lr, g.sign, post_calcium,
                                             p.rate_threshold, p.rate_range)
            weights.append(rules.clip_weights(w + change, g.lower + after, g.upper))
        plastic = plastic._replace(
            weights=tuple(weights), trace=rules.trace_step(plastic.trace, spikes, c.trace_decay, c.trace_increment))
        if self.rule == "nalsm":
            drive = rules.astrocyte_drive(spikes, self._astro_mask)[:, None, None]            # [B, 1, 1]
            plastic = plastic._replace(astro=rules.astrocyte_step(
                plastic.astro, plastic.astro_w, plastic.astro_bias, drive, p.astro_tau))
        if self.phase == "sample" and self.rule in ("stdp", "nalsm"):
            plastic = rules.decay_rates(plastic, p.lr_decay)
        return plastic

    def _time_loop(self, inputs, keys, learns, weights, trace, calcium, table: _TableConstants, steps: int,
                   event_mode: bool, record: bool):
        """learns float32 [rows]: 1 where the row learns (see `learning_rows`); weights: one [1, n, D]
        tensor per group; trace and calcium [1, N]: the start, shared by all rows; table: this device's.

        The loop carries this step's spikes and kernels, computed at the end of the previous
        iteration (steps 1, 2 and 4 of the next step), so that they reach the per-synapse gathers as
        stored arrays rather than being recomputed for every synapse.
        """
        rows = int(inputs.shape[0])
        groups, batch = (1, rows) if self.phase == "sample" else (rows, 1)
        p = self._neuron
        plastic = rules.PlasticState(
            weights=tuple(tf.tile(w, [batch, 1, 1]) for w in weights), trace=tf.tile(trace, [batch, 1]),
            calcium=tf.tile(calcium, [batch, 1]), **self._fresh_rates(tf.ones([batch])))   # reset below
        counts_all = tf.TensorArray(tf.float32, size=groups)
        raster = tf.TensorArray(tf.bool, size=groups * steps)
        astro_trace = tf.TensorArray(tf.float32, size=groups * steps)

        def spike_step(state):          # steps 1, 2 and 4, and the kernel of step 5
            spikes, membrane, since_spike = spike_and_reset(state, p)
            return spikes, membrane, since_spike, synaptic_kernel(since_spike, p.tau_syn)

        for g in tf.range(groups):
            if self.phase == "sample":                       # one group: the whole batch
                group_inputs, group_keys, group_learns = inputs, keys, learns
            else:                                            # snapshot g of the stream, batch 1
                group_inputs, group_keys, group_learns = (x[g][tf.newaxis] for x in (inputs, keys, learns))
            state = initial_state(batch, self.n_neurons)
            plastic = plastic._replace(**self._fresh_rates(group_learns))
            counts = tf.zeros([batch, self.n_res])
            spikes, membrane, since_spike, kernel = spike_step(state)
            for t in tf.range(steps):
                counts += spikes[:, : self.n_res]
                if self.rule == "apstdp":
                    plastic = plastic._replace(
                        calcium=rules.calcium_step(plastic.calcium, spikes, self.params.calcium_tau))
                reservoir_current = self._reservoir_current(plastic.weights, kernel, table)
                input_current = self.params.input_current * _input_spikes(
                    group_inputs, group_keys, t, event_mode, self._pixel_codes)
                state = integrate(spikes, membrane, since_spike, state.refractory,
                                  tf.concat([reservoir_current, input_current], axis=1), p)
                after = tf.minimum(tf.abs(reservoir_current[0, 0]), 0.0)
                plastic = self._step_weights(plastic, spikes, after, table)
                raster = raster.write(g * steps + t, (spikes > 0.0) & record)
                astro_trace = astro_trace.write(g * steps + t, plastic.astro[:, 0, 0])
                spikes, membrane, since_spike, kernel = spike_step(state)
            counts_all = counts_all.write(g, counts)

        def by_row(stacked, tail):      # [groups * steps, batch, *tail] -> [rows, steps, *tail]
            shaped = tf.reshape(stacked, [groups, steps, batch, *tail])
            perm = [0, 2, 1] + list(range(3, 3 + len(tail)))
            return tf.reshape(tf.transpose(shaped, perm), [rows, steps, *tail])

        return (tf.reshape(counts_all.stack(), [rows, self.n_res]),
                by_row(raster.stack(), [self.n_neurons]),
                by_row(astro_trace.stack(), []),
                plastic.weights, plastic.trace, plastic.calcium)

    def _loop_arguments(self, inputs, keys, steps, start: Optional[StreamCarry]):
        """The compiled loop's arguments for rows first..stop-1 of a call on one device, spikes kept or not:
        arguments(device, first, stop, record) -> tuple, as `run` passes them."""
        inputs, steps, event_mode = check_inputs(inputs, steps, self.n_input)
        keys = np.asarray(keys, np.uint32).reshape(-1)
        learns = learning_rows(len(keys), self.reference_batch_quirk)
        if start is None:
            zeros = np.zeros((1, self.n_neurons), np.float32)
            start = StreamCarry(self.weights[np.newaxis], zeros, zeros)
        start_tables = self.table.to_table(np.asarray(start.weights, np.float32))

        def arguments(device, first: int, stop: int, record: bool) -> tuple:
            return (tf.constant(inputs[first:stop]), tf.constant(keys[first:stop]), tf.constant(learns[first:stop]),
                    tuple(tf.constant(w) for w in start_tables), tf.constant(start.trace, tf.float32),
                    tf.constant(start.calcium, tf.float32), self._table[device], int(steps), event_mode,
                    bool(record))
        return arguments

    def xla_program(self, inputs: np.ndarray, keys: np.ndarray, steps: Optional[int] = None,
                    record: bool = False, start: Optional[StreamCarry] = None) -> XlaProgram:
        """The XLA program that `run` compiles for these rows (on the first device), with its arguments:
        for running the same learning loop elsewhere, e.g. on a GPU through JAX
        (`benchmarks/xla_program.py`).  The program is XLA's input (HLO before any backend's passes)."""
        rows = len(np.asarray(keys).reshape(-1))
        arguments = self._loop_arguments(inputs, keys, steps, start)(self.devices[0], 0, rows, record)
        with _on(self.devices[0]):
            hlo = self._loop.experimental_get_compiler_ir(*arguments)(stage="hlo_serialized")
            captured = self._loop.get_concrete_function(*arguments).captured_inputs
        # the program's parameters, in order: the tensors among the arguments (the others are constants of the
        # trace), then the captured ones
        flat = [a for a in tf.nest.flatten(arguments) if tf.is_tensor(a)] + list(captured)
        return XlaProgram(hlo=hlo, arguments=[np.asarray(a) for a in flat])

    def run(self, inputs: np.ndarray, keys: np.ndarray, steps: Optional[int] = None, record: bool = True,
            start: Optional[StreamCarry] = None, record_rows=None) -> PlasticRun:
        """Simulate the rows of `inputs` (as for `LiquidSimulator.run`).  They start from `start`
        (init phase: the stream so far), else from the default weights with zero trace and calcium.
        Spikes are kept for every row (`record`), none, or the rows listed in `record_rows`.

        Sample phase on several devices: each simulates a contiguous slice of the rows; the result
        is the one-device result, bit for bit.
        """
        loop_arguments = self._loop_arguments(inputs, keys, steps, start)
        keys = np.asarray(keys, np.uint32).reshape(-1)
        record_rows = record_rows_of(record_rows, record, len(keys))

        def run_part(device, first, stop) -> PlasticRun:
            with _on(device):
                out = self._loop(*loop_arguments(device, first, stop, len(record_rows) > 0))
                counts, raster, astro = (x.numpy() for x in out[:3])
                weights = trace = calcium = None
                if self.final_state:
                    trace, calcium = out[4].numpy(), out[5].numpy()
                    weights = self.table.to_list([w.numpy() for w in out[3]])
            return PlasticRun(counts.astype(np.int32), raster, astro, weights, trace, calcium)

        parts = _over_devices(self.devices, len(keys), run_part)
        run = parts[0] if len(parts) == 1 else PlasticRun(
            *(None if field[0] is None else np.concatenate(field) for field in zip(*parts)))
        return run._replace(spikes=run.spikes[record_rows])
