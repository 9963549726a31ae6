"""The event-driven CPU engine: pay for spikes, not for synapses.

The XLA engine (`xla.py`) touches every synapse at every millisecond: a dense matrix product for
fixed weights, a read-modify-write of every weight for learning ones.  But in a millisecond only a few
per cent of the neurons spike, and only synapses next to a spike have anything to do.  This engine
simulates exactly the same model (same state, same step order, same counter-based input draws) with
loops compiled by numba that visit only those synapses:

* **Synaptic current.**  The kernel of presynaptic neuron j is k_j = exp(-s_j / tau_u) / tau_u; it
  restarts at 1/tau_u when j spikes and otherwise decays by q = exp(-1/tau_u) per step (tau_u is the same
  for every neuron).  So each reservoir neuron keeps its current I_i = sum_j W_ij k_j in a float64
  accumulator and, per step,

      I_i <- q * I_i + sum over j that spiked of W_ij * (1/tau_u - k_j before the spike)
                     + sum over weights that changed of dW_ij * k_j.

  This is exact in exact arithmetic except for the cap of s at 100 ms, where the kernel stops decaying in
  the model (its value there, e^-100, contributes below 1e-40).  At the start of every sample, when every
  s is 20, I_i = k(20) * sum_j W_ij.
* **Plasticity.**  A rule's change is a product with the postsynaptic spike (causal term) or with the
  presynaptic spike (anti-causal term), so only the incoming synapses of neurons that spiked and the
  outgoing synapses of neurons that spiked can change, and only those are clipped.  Synapses whose pre-
  and postsynaptic neurons both spiked are updated once, with both terms, as in the dense engine.  The
  rules are the scalar twins in `model/plasticity.py`.  Weights outside their class bounds at the start of a
  call (AP-STDP's magnitudes above w_max) are clipped once, at the first step, as the dense engine does.
* **Layout.**  Every synapse is listed by presynaptic neuron (spike propagation, anti-causal updates)
  and by postsynaptic neuron (causal updates), both lists indexing one weight array per row.  Fixed
  weights are stored in presynaptic order, so that propagation streams through them; learning weights in
  postsynaptic order (the synapse list's own), so that the causal updates, the larger share of a
  learning step, stream through them.  A neuron's incoming synapses come in three segments by
  presynaptic class (excitatory, inhibitory, input), inside which a rule's coefficients and bounds are
  constants.  The updates avoid data-dependent branches: on these liquids a mispredicted branch costs more
  than the arithmetic it would skip, and a saturated liquid has a quarter of its neurons spike in a step.
  (The one left asks, in the spreading loop, whether a target spiked.)  The rule is a compile-time
  constant of the compiled loops (`compiled_for_rule`): each rule is compiled on its first use, and its
  loops carry no dispatch by rule.
* **Threads.**  Rows of a sample-phase batch are independent and run in parallel threads.  The init
  phase is one stream, so there every step cuts its synaptic work by postsynaptic neuron into parts,
  blocks of the reservoir with about as many incoming synapses each (`SYNAPSE_PARTS`, two), run on that
  many threads.  A part touches only its own neurons' currents and incoming weights: at its neurons that
  did not spike, the spikes' share of the current and the anti-causal terms; at those that did,
  everything; then, for all of them, the end of the step's synaptic current (so that a neuron's sums stay
  in the cache of the core that works on it).  Each neuron's sums run in the same order however the
  reservoir is cut, so the results do not depend on the threads.  The barrier at the end of each step
  pays on a quiet machine and costs several times its gain when other programs share the cores, so the
  stream runs in slices of about 50 ms, each on whichever way has been measured faster
  (`thread_choice.py`).

Results agree with the XLA engine to rounding (the current is summed in a different order, in float64);
state, weights and everything else are float32 computed with the same formulas in the same order.

Shapes: B rows, N = N_res + n_in neurons (reservoir first), T steps, n_syn synapses.
"""
from __future__ import annotations

import contextlib
import functools
import os
import tempfile
import time
from typing import Callable, NamedTuple, Optional

import numba as nb
import numpy as np
from llvmlite import ir as llvm_ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from lsm_core.config import PAPER
from lsm_core.engines.interface import (
    PlasticRun,
    SimParams,
    astro_mask_of,
    check_inputs,
    check_plastic_settings,
    default_astro_mask,
    learning_rows,
    record_rows_of,
)
from lsm_core.engines.thread_choice import ThreadChoice
from lsm_core.model import plasticity as rules
from lsm_core.model.network import EXC, INH, Network
from lsm_core.model.randomness import _GOLDEN, _M1, _M2, _STEP_SALT

RULE_CODES = {"static": 0, "stdp": 1, "nalsm": 2, "apstdp": 3}

# How the loops are compiled: cached on disk, without the GIL, and with IEEE division (x / 0 gives inf
# instead of raising, as in NumPy).  The divisors here are time constants, never 0, so the numbers are
# the same; without the check per division LLVM can vectorise the neuron loops (7 times as fast).
_COMPILED = dict(cache=True, nogil=True, error_model="numpy")

SYNAPSE_PARTS = 2  # blocks of postsynaptic neurons a step's synaptic work is cut into (the init phase's threads)

_stdp = nb.njit(inline="always")(rules.stdp_change_one)
_nalsm = nb.njit(inline="always")(rules.nalsm_change_one)
_apstdp = nb.njit(inline="always")(rules.apstdp_change_one)


# ----------------------------------------------------------------------------------------------
# Tables and constants handed to the compiled loops
# ----------------------------------------------------------------------------------------------

class EventSynapses(NamedTuple):
    """Every synapse listed twice, by presynaptic and by postsynaptic neuron, both pointing into one
    weight array per row (in `order`, see `build_synapses`).

    pre_start uint64 [N+1]: the synapses of presynaptic neuron j are p = pre_start[j]:pre_start[j+1], with
    postsynaptic neuron target[p] (uint32, ascending within j's synapses) and weight index pre_weight[p]
    (uint32).  The reservoir is cut into parts, blocks of consecutive postsynaptic neurons with about as
    many incoming synapses each: part k is neurons part_start[k]:part_start[k+1] (uint64 [P+1]), and j's
    synapses into it are p = pre_part[j, k]:pre_part[j, k+1] (uint64 [N, P+1]).  post_segment uint64
    [N_res, 4]: the incoming synapses of reservoir neuron i are c = post_segment[i, 0]:post_segment[i, 3],
    from excitatory neurons up to post_segment[i, 1], then from inhibitory ones up to post_segment[i, 2],
    then from input neurons, with presynaptic neuron post_pre[c] (uint32) and weight index post_weight[c]
    (int64; c itself in "post" weight order, the only order in which the loops learn).  Indices are
    unsigned so that the compiled loops skip Python's negative-index wraparound.  A synapse's rule
    coefficients and bounds depend only on its presynaptic neuron's class: sign float32 [N] (+1 excitatory
    or input, -1 inhibitory), lower and upper float32 [N] (excitatory [0, w_max], inhibitory [-w_max, 0],
    input [-w_max, w_max]); class_sign, class_lower, class_upper float32 [3]: the same by class (exc, inh,
    input).
    """

    pre_start: np.ndarray
    target: np.ndarray
    pre_weight: np.ndarray
    part_start: np.ndarray
    pre_part: np.ndarray
    post_segment: np.ndarray
    post_pre: np.ndarray
    post_weight: np.ndarray
    sign: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    class_sign: np.ndarray
    class_lower: np.ndarray
    class_upper: np.ndarray


class EventNeurons(NamedTuple):
    """Per-neuron float32 [N] constants and the synaptic kernel by time since spike, float64 [cap+1]."""

    tau_v: np.ndarray
    v_thresh: np.ndarray
    bias: np.ndarray
    t_refrac: np.ndarray
    kernel: np.ndarray        # exp(-s / tau_u) / tau_u for s = 0 .. cap
    kernel_decay: float       # exp(-1 / tau_u), float64
    since_spike_init: int     # s at the start of every sample [ms]
    since_spike_cap: int
    astro_mask: np.ndarray    # float32 [N]: the astrocyte's weight on each neuron's spikes (+1, -1 or 0)


class EventConstants(NamedTuple):
    """The rule's scalars as float32 (the dense engine's tensors are float32 too)."""

    lr: np.float32
    lr_decay: np.float32
    astro_w: np.float32
    astro_bias: np.float32
    astro_tau: np.float32
    rate_threshold: np.float32
    rate_range: np.float32
    calcium_tau: np.float32
    input_current: np.float32
    trace_decay: np.float32
    trace_increment: np.float32


def build_synapses(net: Network, w_max: float, weight_order: str = "pre",
                   parts: int = SYNAPSE_PARTS) -> tuple[EventSynapses, np.ndarray]:
    """The engine's synapse tables and `order` int64 [n_syn]: weight index -> synapse-list index.

    weight_order "pre": weights stored by presynaptic neuron, so that spike propagation streams through
    them (fixed weights; pre_weight is then the identity, which the fixed liquid's spreading loop relies
    on); "post": by postsynaptic neuron, the synapse list's own order, so that the causal updates at a
    spiking neuron (the larger share of a learning step's work) stream through them.
    """
    syn = net.synapses()                                      # synapse list, sorted by (post, pre)
    by_pre = np.lexsort((syn.post, syn.pre)).astype(np.int64)  # list indices in (pre, post) order
    position = np.empty_like(by_pre)
    position[by_pre] = np.arange(len(by_pre))
    if weight_order == "pre":
        order, pre_weight, post_weight = by_pre, np.arange(len(by_pre)), position
    elif weight_order == "post":
        order, pre_weight, post_weight = np.arange(len(by_pre)), by_pre, np.arange(len(by_pre))
    else:
        raise ValueError(f"weight_order must be 'pre' or 'post', got {weight_order!r}")
    pre_start = np.zeros(net.n_neurons + 1, np.int64)
    pre_start[1:] = np.cumsum(np.bincount(syn.pre, minlength=net.n_neurons))
    neuron_class = np.asarray(net.neuron_class)
    per_class = np.zeros((net.n_res, 3), np.int64)     # in-degree by presynaptic class (exc, inh, input)
    np.add.at(per_class, (syn.post, np.asarray(syn.pre_class, np.int64)), 1)
    start = np.concatenate([[0], np.cumsum(per_class.sum(axis=1))[:-1]])
    post_segment = start[:, None] + np.concatenate([np.zeros((net.n_res, 1), np.int64),
                                                    np.cumsum(per_class, axis=1)], axis=1)
    # parts: consecutive reservoir neurons, cut where the running in-degree passes k / parts of the total
    parts = max(1, min(int(parts), net.n_res))
    in_degree_before = np.concatenate([start, [len(by_pre)]])
    part_start = np.searchsorted(in_degree_before, np.arange(parts + 1) * len(by_pre) / parts, side="left")
    part_start[-1] = net.n_res                        # past neurons without incoming synapses, if any
    part_of_synapse = np.searchsorted(part_start, syn.post[by_pre], side="right") - 1
    per_part = np.zeros((net.n_neurons, parts), np.int64)
    np.add.at(per_part, (syn.pre[by_pre], part_of_synapse), 1)
    pre_part = pre_start[:-1, None] + np.concatenate([np.zeros((net.n_neurons, 1), np.int64),
                                                       np.cumsum(per_part, axis=1)], axis=1)
    tables = EventSynapses(
        pre_start=pre_start.astype(np.uint64), target=np.ascontiguousarray(syn.post[by_pre], np.uint32),
        pre_weight=np.ascontiguousarray(pre_weight, np.uint32), part_start=part_start.astype(np.uint64),
        pre_part=np.ascontiguousarray(pre_part, np.uint64), post_segment=post_segment.astype(np.uint64),
        post_pre=np.ascontiguousarray(syn.pre, np.uint32), post_weight=np.ascontiguousarray(post_weight, np.int64),
        sign=np.where(neuron_class == INH, -1.0, 1.0).astype(np.float32),
        lower=np.where(neuron_class == EXC, 0.0, -w_max).astype(np.float32),
        upper=np.where(neuron_class == INH, 0.0, w_max).astype(np.float32),
        class_sign=np.array([1.0, -1.0, 1.0], np.float32), class_lower=np.array([0.0, -w_max, -w_max], np.float32),
        class_upper=np.array([w_max, 0.0, w_max], np.float32))
    return tables, order


def build_neurons(net: Network, astro_mask: Optional[np.ndarray] = None) -> EventNeurons:
    """The neurons' constants; `astro_mask` float32 [N] (default: every neuron feeds the astrocyte)."""
    tau_syn = np.asarray(net.tau_syn, np.float64)
    if tau_syn.size and not np.all(tau_syn == tau_syn[0]):
        raise ValueError("the event-driven engine needs one synaptic time constant tau_syn for all neurons "
                         "(the paper's liquids have tau_syn = 1 everywhere); use engine='xla' for this network")
    tau = float(np.float32(tau_syn[0])) if tau_syn.size else 1.0
    cap = int(PAPER.neuron.since_spike_cap)
    s = np.arange(cap + 1, dtype=np.float64)
    return EventNeurons(*(np.ascontiguousarray(a, np.float32) for a in
                          (net.tau_v, net.v_thresh, net.bias, net.t_refrac)),
                        kernel=np.exp(-s / tau) / tau, kernel_decay=float(np.exp(-1.0 / tau)),
                        since_spike_init=int(PAPER.neuron.since_spike_init), since_spike_cap=cap,
                        astro_mask=np.ascontiguousarray(default_astro_mask(net.n_res, net.n_input)
                                                        if astro_mask is None else astro_mask, np.float32))


def event_constants(params) -> EventConstants:
    """float32 scalars from a `SimParams` (unused ones 0)."""
    c = PAPER.plasticity
    f = np.float32
    return EventConstants(
        lr=f(params.lr), lr_decay=f(params.lr_decay), astro_w=f(params.astro_w or 0.0),
        astro_bias=f(params.lr * (1.0 + params.astro_bias_offset)), astro_tau=f(params.astro_tau),
        rate_threshold=f(params.rate_threshold or 0.0), rate_range=f(params.rate_range or 0.0),
        calcium_tau=f(params.calcium_tau), input_current=f(params.input_current),
        trace_decay=f(c.trace_decay), trace_increment=f(c.trace_increment))


# ----------------------------------------------------------------------------------------------
# Counter-based input draws (the same numbers as randomness.step_pixel_uniform_np)
# ----------------------------------------------------------------------------------------------

@nb.njit(inline="always")
def _hash32(x):
    """lowbias32 on a uint32 value held in a uint64 (numba widens integer products)."""
    mask = np.uint64(0xFFFFFFFF)
    x = x & mask
    x ^= x >> np.uint64(16)
    x = (x * np.uint64(_M1)) & mask
    x ^= x >> np.uint64(15)
    x = (x * np.uint64(_M2)) & mask
    x ^= x >> np.uint64(16)
    return x


@nb.njit(inline="always")
def _pixel_uniform(step_key, pixel):
    """Uniform float32 in [0, 1) of one input pixel at one step (see model/randomness.py)."""
    code = (np.uint64(pixel) * np.uint64(_GOLDEN)) & np.uint64(0xFFFFFFFF)
    bits = _hash32(step_key ^ code)
    return np.float32(bits >> np.uint64(8)) * np.float32(2.0 ** -24)


def pixel_uniform(keys, t, n_input):
    """float32 [B, n_input]: `randomness.step_pixel_uniform_np`, compiled (for tests)."""
    with compiling():
        return _pixel_uniform_rows(keys, t, n_input)


@nb.njit(cache=True)
def _pixel_uniform_rows(keys, t, n_input):
    out = np.empty((keys.shape[0], n_input), np.float32)
    for b in range(keys.shape[0]):
        step_key = _hash32(np.uint64(keys[b]) ^ _hash32(np.uint64(t) + np.uint64(_STEP_SALT)))
        for p in range(n_input):
            out[b, p] = _pixel_uniform(step_key, p)
    return out


# ----------------------------------------------------------------------------------------------
# One stream of samples: the compiled time loop
# ----------------------------------------------------------------------------------------------

PREFETCH_AHEAD = 12   # synapses: how far ahead the spreading loop asks for weights (best of 6, 12, 24 here)


@intrinsic
def _prefetch(typingctx, array, index):
    """Ask the CPU to start loading array[index] into its caches, for writing (LLVM's prefetch hint; it
    changes no number).  A learning step's spreading half mostly waits for weights at random places in
    memory, one per target, so it asks for each weight some synapses before it needs it."""
    def codegen(context, builder, signature, args):
        array_type, index_type = signature.args
        data = context.make_array(array_type)(context, builder, args[0])
        position = context.cast(builder, args[1], index_type, types.intp)
        pointer = cgutils.get_item_pointer(context, builder, array_type, data, [position], wraparound=False)
        byte_pointer = llvm_ir.IntType(8).as_pointer()
        i32 = llvm_ir.IntType(32)
        function = builder.module.declare_intrinsic(
            "llvm.prefetch", [byte_pointer], llvm_ir.FunctionType(llvm_ir.VoidType(), [byte_pointer, i32, i32, i32]))
        builder.call(function, [builder.bitcast(pointer, byte_pointer), i32(1), i32(3), i32(1)])  # write, keep, data
        return context.get_dummy_value()
    return types.void(array, index), codegen


@nb.njit(inline="always")
def _rule_change(rule, causal, anti_causal, lr, astro, sign, post_calcium, threshold, window):
    """The change of one synapse by rule code (1 STDP, 2 NALSM, 3 AP-STDP): `model/plasticity.py`'s twins;
    threshold and window: AP-STDP's rate threshold and range."""
    if rule == 1:
        return _stdp(causal, anti_causal, lr, sign)
    if rule == 2:
        return _nalsm(causal, anti_causal, lr, astro, sign > np.float32(0.0))
    return _apstdp(causal, anti_causal, lr, sign, post_calcium, threshold, window, np.float32(0.0))


# A step's synaptic work (steps 4 and 8) comes in parts, one per block of postsynaptic reservoir neurons
# (`EventSynapses.part_start`).  Parts touch disjoint weights and neurons, so that one stream can run them
# on several threads (where each core has a cache of its own, each keeps its block of weights there).  The
# functions below take plain arrays: numba's parallel loops do not write through arrays held in tuples.
#
# Arrays of the step: spiked bool [N]; spikers int64 [N] (ascending, the first n_res_spikes reservoir
# neurons); jump float64 [N] (kernel[0] - kernel[s] before the spike for this step's spikers, 0 elsewhere); since
# uint16 [N] (already 0 for this step's spikers); synaptic, change, weight_sum float64 [N_res]; current
# float32 [N] (the part writes its neurons' synaptic current into it).

@nb.njit(inline="always")
def _spread_spikes(rule, track_sum, part, n_spikers, spikers, spiked, jump, syn, kernel, weights, trace, calcium,
                   lr, astro, threshold, window, synaptic, change, weight_sum):
    """Step 4 (the spikes' share of the current) at the part's targets that did not spike this step, with
    step 8's anti-causal terms there; without plasticity, at every target of the part."""
    zero = np.float32(0.0)
    plastic = rule != 0
    pre_part, target, pre_weight = syn.pre_part, syn.target, syn.pre_weight
    for a in range(n_spikers):
        j = spikers[a]
        jump_j = jump[j]
        sign, lower, upper = syn.sign[j], syn.lower[j], syn.upper[j]
        stop = pre_part[j, part + 1]
        for p in range(pre_part[j, part], stop):
            if plastic:               # learning weights are in "post" order: these are at random places.
                # Only the part's own: a prefetch is for writing, and would take another part's line
                # from the cache of the thread that works on it.
                _prefetch(weights, pre_weight[min(p + PREFETCH_AHEAD, stop - 1)])
            i = target[p]
            # a fixed liquid's weights are in "pre" order, where weight p is synapse p's: read in order
            q = pre_weight[p] if plastic else p
            old = weights[q]
            if not plastic:
                synaptic[i] += old * jump_j
            else:
                # `_learn_at_spikers` serves a target that spiked: here it keeps its weight and gets 0, with
                # no branch on its spike (a saturated liquid has a quarter of its neurons spike in a step)
                quiet = not spiked[i]
                synaptic[i] += old * (jump_j if quiet else 0.0)
                new = min(max(old + _rule_change(rule, zero, trace[i], lr, astro, sign, calcium[i], threshold,
                                                 window), lower), upper)
                new = new if quiet else old
                weights[q] = new
                moved = np.float64(new) - np.float64(old)
                change[i] += moved * kernel[0]
                if track_sum:
                    weight_sum[i] += moved


@nb.njit(inline="always")
def _learn_at_spikers(rule, track_sum, clip_now, part, n_res_spikes, spikers, spiked, jump, since, syn, kernel,
                      weights, trace, calcium, lr, astro, threshold, window, synaptic, change, weight_sum):
    """Steps 4 and 8 at the part's reservoir neurons that spiked this step: the spikes' share of their
    current, then the causal terms of all their incoming synapses (both terms where the presynaptic
    neuron spiked too), traces before their update.  Learning weights are in "post" order (weight c is
    synapse c).  `clip_now` (the call's first step): weights outside their bounds are clipped before their
    change."""
    zero = np.float32(0.0)
    post_segment, post_pre = syn.post_segment, syn.post_pre
    first_target, end_target = syn.part_start[part], syn.part_start[part + 1]
    for a in range(n_res_spikes):
        i = spikers[a]
        if i < first_target:
            continue
        if i >= end_target:
            break
        post_trace, post_calcium = trace[i], calcium[i]
        current = synaptic[i]
        moved_current = 0.0
        moved_sum = 0.0
        for cls in range(3):         # incoming synapses by presynaptic class: exc, inh, input
            sign, lower, upper = syn.class_sign[cls], syn.class_lower[cls], syn.class_upper[cls]
            for c in range(post_segment[i, cls], post_segment[i, cls + 1]):
                j = post_pre[c]
                old = weights[c]
                # jump[j] is 0 unless j spiked this step: no branch on a presynaptic spike, which in a
                # saturated liquid (a quarter of the neurons each step) the CPU cannot predict
                current += old * jump[j]
                anti = post_trace if spiked[j] else zero
                start = min(max(old, lower), upper) if clip_now else old
                new = min(max(start + _rule_change(rule, trace[j], anti, lr, astro, sign, post_calcium, threshold,
                                                   window), lower), upper)
                weights[c] = new
                moved = np.float64(new) - np.float64(old)
                moved_current += moved * kernel[since[j]]
                moved_sum += moved
        synaptic[i] = current
        change[i] += moved_current
        if track_sum:
            weight_sum[i] += moved_sum


@nb.njit(inline="always")
def _synaptic_part(rule, track_sum, clip_now, part, n_spikers, n_res_spikes, spikers, spiked, jump, since, syn,
                   kernel, weights, trace, calcium, lr, astro, threshold, window, synaptic, change, weight_sum,
                   current, kernel_decay):
    """A step's synaptic work at the reservoir neurons of one part: steps 4 and 8 at its quiet targets, then
    at its spikers (the first step of a call also clips its other weights), then the end of the step for
    its currents: current float32 [N] gets step 5's synaptic current, and step 6 brings in the step's weight
    changes and decays every kernel by `kernel_decay` (q).  Done here, each part's neurons stay with the
    thread that works on them."""
    _spread_spikes(rule, track_sum, part, n_spikers, spikers, spiked, jump, syn, kernel, weights, trace, calcium,
                   lr, astro, threshold, window, synaptic, change, weight_sum)
    if rule != 0:
        _learn_at_spikers(rule, track_sum, clip_now, part, n_res_spikes, spikers, spiked, jump, since, syn, kernel,
                          weights, trace, calcium, lr, astro, threshold, window, synaptic, change, weight_sum)
        if clip_now:
            _clip_quiet_targets(track_sum, part, syn, kernel, weights, spiked, since, change, weight_sum)
    for i in range(syn.part_start[part], syn.part_start[part + 1]):
        current[i] = np.float32(synaptic[i])
        synaptic[i] = (synaptic[i] + change[i]) * kernel_decay
        if rule != 0:                # (a fixed liquid's changes stay 0)
            change[i] = 0.0


@nb.njit(inline="always")
def _all_parts(rule, track_sum, clip_now, n_spikers, n_res_spikes, spikers, spiked, jump, since, syn, kernel,
               weights, trace, calcium, lr, astro, threshold, window, synaptic, change, weight_sum, current,
               kernel_decay):
    """A step's synaptic work: the parts as the iterations of a `prange` (on several threads in `_parts_threaded`,
    compiled with parallel=True; one after the other in `_parts_here`)."""
    for part in nb.prange(syn.part_start.shape[0] - 1):
        _synaptic_part(rule, track_sum, clip_now, part, n_spikers, n_res_spikes, spikers, spiked, jump, since, syn,
                       kernel, weights, trace, calcium, lr, astro, threshold, window, synaptic, change, weight_sum,
                       current, kernel_decay)


@nb.njit(**_COMPILED)
def _parts_here(rule, track_sum, clip_now, n_spikers, n_res_spikes, spikers, spiked, jump, since, syn, kernel,
                weights, trace, calcium, lr, astro, threshold, window, synaptic, change, weight_sum, current,
                kernel_decay):
    """`_all_parts` on this thread."""
    _all_parts(rule, track_sum, clip_now, n_spikers, n_res_spikes, spikers, spiked, jump, since, syn, kernel,
               weights, trace, calcium, lr, astro, threshold, window, synaptic, change, weight_sum, current,
               kernel_decay)


@nb.njit(parallel=True, **_COMPILED)
def _parts_threaded(rule, track_sum, clip_now, n_spikers, n_res_spikes, spikers, spiked, jump, since, syn,
                    kernel, weights, trace, calcium, lr, astro, threshold, window, synaptic, change, weight_sum,
                    current, kernel_decay):
    """`_all_parts` on numba's threads, one part each."""
    _all_parts(rule, track_sum, clip_now, n_spikers, n_res_spikes, spikers, spiked, jump, since, syn, kernel,
               weights, trace, calcium, lr, astro, threshold, window, synaptic, change, weight_sum, current,
               kernel_decay)


@nb.njit(inline="always")
def _clip_quiet_targets(track_sum, part, syn, kernel, weights, spiked, since, change, weight_sum):
    """The first step's clip of the weights `_learn_at_spikers` did not visit (into the part's neurons that
    did not spike), booking the changes into the current."""
    for i in range(syn.part_start[part], syn.part_start[part + 1]):
        if spiked[i]:
            continue
        for cls in range(3):
            lower, upper = syn.class_lower[cls], syn.class_upper[cls]
            for c in range(syn.post_segment[i, cls], syn.post_segment[i, cls + 1]):
                old = weights[c]
                new = min(max(old, lower), upper)
                if new != old:
                    weights[c] = new
                    moved = np.float64(new) - np.float64(old)
                    change[i] += moved * kernel[since[syn.post_pre[c]]]
                    if track_sum:
                        weight_sum[i] += moved


@nb.njit(inline="always")
def _stream(run_parts, rule, sample_phase, first, stop, event_mode, probabilities, events, keys, learns, steps,
            syn, neu, k, weights, weight_sum, trace, calcium, clip_first, record_slot, out_counts, out_raster,
            out_astro):
    """Simulate samples first..stop-1 one after another on one liquid (one stream).

    rule: 0 static, 1 STDP, 2 NALSM, 3 AP-STDP.  weights float32 [n_syn] (engine order), trace and
    calcium float32 [N]: carried from sample to sample and updated in place; weight_sum float64 [N_res]:
    sum_j W_ij of those weights (`_weight_sums`), followed in place when the weights change from sample to
    sample (not in the sample phase, where several rows may share it).  Every sample restarts the
    neuron state, the learning rate and the astrocyte.  Inputs: probabilities float32 [rows, n_in] with
    keys uint32 [rows] (image mode), or events uint8 [rows, T, n_in] (event mode).  Outputs for sample
    r: counts int32 [r, N_res]; out_raster[record_slot[r]] bool [T, N] where record_slot[r] >= 0;
    astro float32 [r, T] (A after each step).  `clip_first`: clip every weight at the first step.

    `run_parts` (`_parts_here` or `_parts_threaded`) does a step's synaptic work, part by part: in each,
    `_spread_spikes` (targets that did not spike) and `_learn_at_spikers` (reservoir neurons that spiked),
    then the step's synaptic current of the part's neurons and its decay.  `rule` is a literal (see
    `compiled_for_rule`).
    """
    kernel = neu.kernel
    tau_v, v_thresh, bias, t_refrac, cap = neu.tau_v, neu.v_thresh, neu.bias, neu.t_refrac, neu.since_spike_cap
    astro_mask = neu.astro_mask
    n = tau_v.shape[0]
    n_res = syn.post_segment.shape[0]
    track_sum = not sample_phase                 # several samples per stream: sum_j W_ij must follow the changes
    n_in = n - n_res
    plastic = rule != 0
    zero = np.float32(0.0)
    one = np.float32(1.0)
    membrane = np.empty(n, np.float32)
    refractory = np.empty(n, np.float32)
    current = np.empty(n, np.float32)
    pixels = np.empty(n_in, np.int64)
    spiked = np.zeros(n, np.bool_)
    spikers = np.empty(n, np.int64)
    jump = np.zeros(n, np.float64)
    since = np.empty(n, np.uint16)               # s, ms since the last spike (<= cap); its kernel is kernel[s]
    synaptic = np.empty(n_res, np.float64)       # I_i = sum_j W_ij k_j, per reservoir neuron
    change = np.empty(n_res, np.float64)         # this step's sum of dW_ij k_j
    for i in range(n_res):
        change[i] = 0.0

    for r in range(first, stop):
        for j in range(n):
            membrane[j] = zero
            refractory[j] = zero
            since[j] = neu.since_spike_init
        start_kernel = kernel[neu.since_spike_init]
        for i in range(n_res):
            synaptic[i] = start_kernel * weight_sum[i]
        lr = k.lr * learns[r]
        astro = k.lr
        astro_w = k.astro_w
        astro_bias = k.astro_bias
        n_pixels = 0                 # image mode: only pixels with a spike probability above 0 are drawn
        if not event_mode:
            for p in range(n_in):
                if probabilities[r, p] > zero:
                    pixels[n_pixels] = p
                    n_pixels += 1
        slot = record_slot[r]
        for t in range(steps):
            # steps 1-2: who spikes (a refractory neuron cannot), reset of their membrane
            for j in range(n):
                free = one - min(max(refractory[j], zero), one)
                fire = membrane[j] * free >= v_thresh[j]
                spiked[j] = fire
                membrane[j] = membrane[j] * (zero if fire else one)
            n_spikers = np.int64(0)      # typed int64 from the start: a literal 0 would compile `run_parts` twice
            for j in range(n):           # without a branch: written always, kept where j spiked
                spikers[n_spikers] = j
                n_spikers += np.int64(spiked[j])
            n_res_spikes = np.int64(0)
            while n_res_spikes < n_spikers and spikers[n_res_spikes] < n_res:
                out_counts[r, spikers[n_res_spikes]] += 1
                n_res_spikes += 1
            if slot >= 0:
                for j in range(n):
                    out_raster[slot, t, j] = spiked[j]
            # step 3: calcium (AP-STDP)
            if rule == 3:
                for j in range(n):
                    calcium[j] = calcium[j] - calcium[j] / k.calcium_tau + (one if spiked[j] else zero)
            # the spikers' kernels restart (step 6's reset, needed by the parts below)
            for a in range(n_spikers):
                j = spikers[a]
                jump[j] = kernel[0] - kernel[since[j]]
                since[j] = 0
            # steps 4 and 8
            clip_now = clip_first and r == first and t == 0
            run_parts(rule, track_sum, clip_now, n_spikers, n_res_spikes, spikers, spiked, jump, since, syn, kernel,
                      weights, trace, calcium, lr, astro, k.rate_threshold, k.rate_range, synaptic, change,
                      weight_sum, current, neu.kernel_decay)
            for a in range(n_spikers):   # jump is 0 wherever no spike: `_learn_at_spikers` adds it unconditionally
                jump[spikers[a]] = 0.0
            if plastic:
                # step 9: traces
                for j in range(n):
                    trace[j] = k.trace_decay * ((k.trace_increment if spiked[j] else zero) + trace[j])
                # step 10: astrocyte
                if rule == 2:
                    activity = zero           # the drive: sum of mask * S over this step's spikers
                    for a in range(n_spikers):
                        activity += astro_mask[spikers[a]]
                    astro = astro + (astro_w * activity + astro_bias - astro) / k.astro_tau
                # step 11: decays of the sample phase
                if sample_phase and (rule == 1 or rule == 2):
                    lr = max(lr * k.lr_decay, zero)
                    astro = astro * k.lr_decay
                    astro_w = astro_w * k.lr_decay
                    astro_bias = astro_bias * k.lr_decay
            # step 5: leaky integration of the synaptic and input currents
            for p in range(n_in):
                current[n_res + p] = zero
            if event_mode:
                for p in range(n_in):
                    if events[r, t, p] != 0:
                        current[n_res + p] = k.input_current
            else:
                step_key = _hash32(np.uint64(keys[r]) ^ _hash32(np.uint64(t) + np.uint64(_STEP_SALT)))
                for a in range(n_pixels):
                    p = pixels[a]
                    if _pixel_uniform(step_key, p) < probabilities[r, p]:
                        current[n_res + p] = k.input_current
            for j in range(n):
                v = membrane[j]
                membrane[j] = v + current[j] + bias[j] - v / tau_v[j]
            # steps 6-7: time since spike, refractory counter
            for j in range(n):
                since[j] = min(since[j] + 1, cap)
                refractory[j] = t_refrac[j] if spiked[j] else refractory[j] - one
            out_astro[r, t] = astro


@nb.njit(inline="always")
def _weight_sums(syn, weights):
    """float64 [N_res]: sum_j W_ij of each reservoir neuron, summed by presynaptic neuron (for the current at
    the start of a sample, I_i = k(s_init) * sum_j W_ij)."""
    n_res = syn.post_segment.shape[0]
    weight_sum = np.zeros(n_res, np.float64)
    for j in range(syn.pre_start.shape[0] - 1):
        for p in range(syn.pre_start[j], syn.pre_start[j + 1]):
            weight_sum[syn.target[p]] += weights[syn.pre_weight[p]]
    return weight_sum


@nb.njit(**_COMPILED)
def _run_stream(rule, sample_phase, first, stop, event_mode, probabilities, events, keys, learns, steps,
                syn, neu, k, weights, weight_sum, trace, calcium, clip_first, record_slot, out_counts, out_raster,
                out_astro):
    """`_stream` on one thread (the sample phase's rows, each already on a thread of its own)."""
    nb.literally(rule)
    _stream(_parts_here, rule, sample_phase, first, stop, event_mode, probabilities, events, keys, learns, steps,
            syn, neu, k, weights, weight_sum, trace, calcium, clip_first, record_slot, out_counts, out_raster,
            out_astro)


@nb.njit(**_COMPILED)
def _run_stream_threaded(rule, sample_phase, first, stop, event_mode, probabilities, events, keys, learns, steps,
                         syn, neu, k, weights, weight_sum, trace, calcium, clip_first, record_slot, out_counts,
                         out_raster, out_astro):
    """`_stream` with each step's parts on numba's threads (the init phase: one stream, batch 1)."""
    nb.literally(rule)
    _stream(_parts_threaded, rule, sample_phase, first, stop, event_mode, probabilities, events, keys, learns, steps,
            syn, neu, k, weights, weight_sum, trace, calcium, clip_first, record_slot, out_counts, out_raster,
            out_astro)


@nb.njit(**_COMPILED)
def weight_sums(syn, weights):
    """`_weight_sums` on its own: the start of an init-phase stream, carried through its slices."""
    return _weight_sums(syn, weights)


@nb.njit(parallel=True, **_COMPILED)
def _run_rows(rule, event_mode, probabilities, events, keys, learns, steps, syn, neu, k, start_weights,
              start_trace, start_calcium, clip_first, record_slot, out_counts, out_raster, out_astro,
              out_weights, out_trace, out_calcium, order):
    """Sample phase: every row is an independent liquid starting from `start_weights`, in parallel.

    out_weights float32 [B, n_syn] (synapse-list order, via `order`), out_trace and out_calcium float32
    [B, N]: each row's final values (each [0, ...] when not wanted).
    """
    nb.literally(rule)
    rows = out_counts.shape[0]
    weight_sum = _weight_sums(syn, start_weights)       # the same for every row: the rows only read it
    for r in nb.prange(rows):
        # numba types r as int64, then as uint64 inside the parallel loop: one int64 keeps `_run_stream` to one
        # compiled version
        row = np.int64(r)
        weights = start_weights.copy()
        trace = start_trace.copy()
        calcium = start_calcium.copy()
        _run_stream(rule, True, row, row + 1, event_mode, probabilities, events, keys, learns, steps, syn, neu, k,
                    weights, weight_sum, trace, calcium, clip_first, record_slot, out_counts, out_raster, out_astro)
        if out_weights.shape[0] > 0:
            for q in range(order.shape[0]):
                out_weights[r, order[q]] = weights[q]
        if out_trace.shape[0] > 0:
            # element by element: a whole-row assignment would compile numba's shape-mismatch message
            # (string formatting, about 4 s of compiling per rule)
            for j in range(trace.shape[0]):
                out_trace[r, j] = trace[j]
                out_calcium[r, j] = calcium[j]


class RuleKernels(NamedTuple):
    """`_run_rows`, `_run_stream` and `_run_stream_threaded` for one rule, without their first argument."""

    rows: Callable
    stream: Callable
    stream_threaded: Callable


@functools.lru_cache(maxsize=None)
def compiled_for_rule(rule: int) -> RuleKernels:
    """The compiled entry points for one rule code.

    The rule is a constant in them, which numba types as a literal: each rule's loops are compiled on its
    first use only (and cached on disk), with the rule fixed inside them, so they carry no dispatch by rule.
    """
    def rows(event_mode, probabilities, events, keys, learns, steps, syn, neu, k, start_weights, start_trace,
             start_calcium, clip_first, record_slot, out_counts, out_raster, out_astro, out_weights, out_trace,
             out_calcium, order):
        _run_rows(rule, event_mode, probabilities, events, keys, learns, steps, syn, neu, k, start_weights,
                  start_trace, start_calcium, clip_first, record_slot, out_counts, out_raster, out_astro,
                  out_weights, out_trace, out_calcium, order)

    def stream(sample_phase, first, stop, event_mode, probabilities, events, keys, learns, steps, syn, neu, k,
               weights, weight_sum, trace, calcium, clip_first, record_slot, out_counts, out_raster, out_astro):
        _run_stream(rule, sample_phase, first, stop, event_mode, probabilities, events, keys, learns, steps,
                    syn, neu, k, weights, weight_sum, trace, calcium, clip_first, record_slot, out_counts, out_raster,
                    out_astro)

    def stream_threaded(sample_phase, first, stop, event_mode, probabilities, events, keys, learns, steps, syn,
                        neu, k, weights, weight_sum, trace, calcium, clip_first, record_slot, out_counts, out_raster,
                        out_astro):
        _run_stream_threaded(rule, sample_phase, first, stop, event_mode, probabilities, events, keys, learns,
                             steps, syn, neu, k, weights, weight_sum, trace, calcium, clip_first, record_slot,
                             out_counts, out_raster, out_astro)

    return RuleKernels(*(nb.njit(**_COMPILED)(entry) for entry in (rows, stream, stream_threaded)))


# The position of out_counts among a `RuleKernels.rows` call's arguments: `_run_rows` simulates one row per
# row of it, so with it cut to no rows the same call simulates nothing.
ROWS_COUNTS_ARG = 14


@nb.njit(cache=True, parallel=True)
def _touch_threads(out):
    for i in nb.prange(out.shape[0]):
        out[i] = i


@functools.lru_cache(maxsize=1)
def quick_thread_launch() -> bool:
    """Whether numba's threading layer starts a parallel loop in microseconds (OpenMP or TBB, about 2-3 us
    here).  Only then does the init phase run each step's parts on several threads: the fallback layer,
    workqueue, takes about 50 us per launch, more than a step's work."""
    with compiling():
        _touch_threads(np.zeros(2))
    return nb.threading_layer() in ("omp", "tbb")


# ----------------------------------------------------------------------------------------------
# Compiling beside other processes
# ----------------------------------------------------------------------------------------------

COMPILE_LOCK_NAME = "lsm_core_compile.lock"


@contextlib.contextmanager
def compiling():
    """Held while this process compiles a loop of this module or loads it from numba's cache on disk.

    That cache is not safe for two processes that compile one function at the same moment: both may give
    the same file name to different compiled versions, and a later run then loads the wrong machine code
    and crashes.  Test processes, sweep workers and several scripts started together do exactly that on a
    fresh installation, so the first call of every loop in a process takes an exclusive `flock` on a file
    beside the cache (the system releases it when the process ends, also after a crash).  Where the file
    system has no locks, the call goes ahead without one."""
    try:
        import fcntl
        folder = getattr(getattr(_run_rows, "_cache", None), "_cache_path", None) or tempfile.gettempdir()
        handle = open(os.path.join(folder, COMPILE_LOCK_NAME), "a")
    except (ImportError, OSError):
        yield
        return
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError:             # no locks on this file system: as without the lock
            pass
        yield                       # closing the file releases the lock


def _run_compiled(kernel, args: tuple, empty_args: tuple):
    """kernel(*args); the first time this process meets these argument types, an empty call (`empty_args`:
    the same types, no samples) first compiles or loads the kernel under `compiling()`, so that the lock is
    never held while simulating."""
    _compiled_for(kernel, args, empty_args)
    return kernel(*args)


def _compiled_for(kernel, args: tuple, empty_args: tuple) -> None:
    """The compiling half of `_run_compiled`: afterwards kernel(*args) runs without compiling."""
    if _needs_compiling(kernel, args):
        with compiling():
            kernel(*empty_args)


def _needs_compiling(kernel, args: tuple) -> bool:
    """Whether `kernel`, a numba dispatcher, has no machine code in this process for these arguments' types
    yet (False for any other callable)."""
    if not hasattr(kernel, "overloads"):
        return False
    try:
        return tuple(kernel.typeof_pyval(a) for a in args) not in kernel.overloads
    except Exception:               # numba's dispatcher internals changed: take the safe way
        return True


def _without_rows(args: tuple) -> tuple:
    """The arguments of a `RuleKernels.rows` call with no rows to simulate (the same types)."""
    k = ROWS_COUNTS_ARG
    return args[:k] + (args[k][:0],) + args[k + 1:]


# ----------------------------------------------------------------------------------------------
# The simulators: the same interfaces as the XLA engine's
# ----------------------------------------------------------------------------------------------

def _inputs_for_kernel(inputs, steps, n_input):
    """(event_mode, probabilities float32 [B, n_in], events uint8 [B, T, n_in], steps), the unused
    mode's array empty."""
    inputs, steps, event_mode = check_inputs(inputs, steps, n_input)
    if event_mode:
        return True, np.zeros((0, 0), np.float32), np.ascontiguousarray(inputs), steps
    return False, np.ascontiguousarray(inputs), np.zeros((0, 0, 0), np.uint8), steps


class _EventEngine:
    """What both event-driven simulators share: the tables, the constants, thread settings.  `parts`: the
    blocks of postsynaptic neurons a step is cut into for threads (`build_synapses`)."""

    def __init__(self, net: Network, params, threads: Optional[int] = None, weight_order: str = "pre",
                 parts: int = 1):
        self.params = params if params is not None else SimParams()
        self.n_neurons, self.n_res, self.n_input = net.n_neurons, net.n_res, net.n_input
        self.synapses, self.order = build_synapses(net, self.params.w_max, weight_order, parts)
        self.neurons = build_neurons(net, astro_mask_of(self.params, net.n_res, net.n_input))
        self.constants = event_constants(self.params)
        self.threads = threads

    def to_engine_order(self, weights) -> np.ndarray:
        """[n_syn] synapse-list weights -> engine order."""
        return np.ascontiguousarray(np.asarray(weights, np.float32).reshape(-1)[self.order])

    def from_engine_order(self, weights) -> np.ndarray:
        out = np.empty_like(weights)
        out[self.order] = weights
        return out

    def _threads(self):
        """Numba threads for this call: `threads`, else every core numba may use."""
        if self.threads:
            nb.set_num_threads(min(int(self.threads), nb.config.NUMBA_NUM_THREADS))


class EventLiquidSimulator(_EventEngine):
    """`simulator.LiquidSimulator` (fixed weights) with the event-driven engine; same `run`."""

    def __init__(self, net: Network, weights: np.ndarray, params=None, threads: Optional[int] = None):
        super().__init__(net, params, threads)
        weights = np.asarray(weights, np.float32)
        if weights.shape != self.order.shape:
            raise ValueError(f"weights must have shape [n_syn] = [{len(self.order)}], got {weights.shape}")
        self.weights = self.to_engine_order(weights)

    def run(self, inputs: np.ndarray, keys: np.ndarray, steps: Optional[int] = None,
            record_rows=()) -> tuple[np.ndarray, np.ndarray]:
        """As `LiquidSimulator.run`: counts int32 [B, N_res] and rasters bool [len(record_rows), T, N]."""
        event_mode, probabilities, events, steps = _inputs_for_kernel(inputs, steps, self.n_input)
        keys = np.asarray(keys, np.uint32).reshape(-1)
        record_rows = record_rows_of(record_rows, False, len(keys))
        out = _outputs(len(keys), steps, self.n_neurons, self.n_res, record_rows)
        self._threads()
        zeros = np.zeros(self.n_neurons, np.float32)
        nothing = np.zeros((0, 0), np.float32)
        args = (event_mode, probabilities, events, keys, np.ones(len(keys), np.float32), steps, self.synapses,
                self.neurons, self.constants, self.weights, zeros, zeros, False, out["slot"], out["counts"],
                out["raster"], out["astro"], nothing, nothing, nothing, self.order)
        _run_compiled(compiled_for_rule(0).rows, args, _without_rows(args))
        return out["counts"], out["raster"]


def _outputs(rows: int, steps: int, n_neurons: int, n_res: int, record_rows: np.ndarray) -> dict:
    """The kernels' output arrays; `record_rows` already checked (`engine_interface.record_rows_of`)."""
    slot = np.full(rows, -1, np.int64)
    slot[record_rows] = np.arange(len(record_rows))
    return dict(slot=slot, counts=np.zeros((rows, n_res), np.int32),
                raster=np.zeros((len(record_rows), steps, n_neurons), np.bool_),
                astro=np.zeros((rows, steps), np.float32))


class EventPlasticSimulator(_EventEngine):
    """`simulator.PlasticSimulator` (learning weights) with the event-driven engine; same `run`.

    Sample phase: the rows run in parallel threads, each with its own copy of the weights.  Init phase:
    one stream whose steps each cut their synaptic work into parts on two threads (where numba has two and
    `quick_thread_launch`) or run on one, slice by slice, whichever is measured faster (`ThreadChoice`:
    on a machine whose cores other programs share, one thread is).  `final_state=False` (sample phase): no
    final weights, trace and calcium per row (`PlasticRun` fields None).
    """

    def __init__(self, net: Network, weights: np.ndarray, rule: str, phase: str, params=None,
                 reference_batch_quirk: bool = False, threads: Optional[int] = None, final_state: bool = True):
        # only the init phase cuts its steps into parts for threads; a sample-phase row has a thread of its own
        super().__init__(net, params, threads, weight_order="post", parts=SYNAPSE_PARTS if phase == "init" else 1)
        check_plastic_settings(rule, phase, self.params)
        self.rule, self.phase = rule, phase
        self.final_state = final_state or phase == "init"   # the init phase's state is what it computes
        self.thread_choice: Optional[ThreadChoice] = None      # the init phase's, made at its first run
        self.reference_batch_quirk = reference_batch_quirk and phase == "sample"
        self.weights = np.asarray(weights, np.float32).reshape(-1)
        if self.weights.shape != self.order.shape:
            raise ValueError(f"weights must have shape [n_syn] = [{len(self.order)}], got {self.weights.shape}")
        s = self.synapses
        pre = np.empty(len(s.pre_weight), np.int64)       # presynaptic neuron of each weight (engine order)
        pre[s.pre_weight] = np.repeat(np.arange(self.n_neurons), np.diff(s.pre_start).astype(np.int64))
        self._bounds = (s.lower[pre], s.upper[pre])

    def _run_stream(self, code, event_mode, probabilities, events, keys, learns, steps, weights, trace, calcium,
                    clip_first, out) -> None:
        """The init phase: the rows as one stream, in slices each run on one thread or with each step's parts
        on several, whichever `thread_choice` has measured faster (the same numbers either way: sum_j W_ij is
        computed once and carried through the slices, the first step's clip done in the first slice only)."""
        kernels = compiled_for_rule(code)
        weight_sum = _run_compiled(weight_sums, (self.synapses, weights), (self.synapses, weights))
        if self.thread_choice is None:
            self.thread_choice = ThreadChoice(nb.get_num_threads() > 1 and quick_thread_launch())
        rows, done = len(keys), 0
        while done < rows:
            threaded, samples = self.thread_choice.next_slice(rows - done, steps)
            stream = kernels.stream_threaded if threaded else kernels.stream
            first, stop = np.int64(done), np.int64(min(rows, done + samples))
            args = (False, first, stop, event_mode, probabilities, events, keys, learns, steps, self.synapses,
                    self.neurons, self.constants, weights, weight_sum, trace, calcium, bool(clip_first and done == 0),
                    out["slot"], out["counts"], out["raster"], out["astro"])
            _compiled_for(stream, args, args[:1] + (first, first) + args[3:])     # no samples: first = stop
            start = time.perf_counter()
            stream(*args)
            self.thread_choice.record(threaded, int(stop - first) * steps, time.perf_counter() - start)
            done = int(stop)

    def _outside_bounds(self, engine_weights) -> bool:
        lower, upper = self._bounds
        return bool(np.any((engine_weights < lower) | (engine_weights > upper)))

    def run(self, inputs: np.ndarray, keys: np.ndarray, steps: Optional[int] = None, record: bool = True,
            start=None, record_rows=None):
        """As `PlasticSimulator.run`; `record_rows` (optional) records only those rows, and `spikes`
        then holds them in that order."""
        event_mode, probabilities, events, steps = _inputs_for_kernel(inputs, steps, self.n_input)
        keys = np.asarray(keys, np.uint32).reshape(-1)
        rows = len(keys)
        record_rows = record_rows_of(record_rows, record, rows)
        learns = learning_rows(rows, self.reference_batch_quirk)
        if start is None:
            weights = self.weights
            trace = calcium = np.zeros(self.n_neurons, np.float32)
        else:
            weights = np.asarray(start.weights, np.float32).reshape(-1)
            trace = np.array(start.trace, np.float32).reshape(-1)
            calcium = np.array(start.calcium, np.float32).reshape(-1)
        weights = self.to_engine_order(weights)
        clip_first = self._outside_bounds(weights)
        out = _outputs(rows, steps, self.n_neurons, self.n_res, record_rows)
        code = RULE_CODES[self.rule]
        self._threads()
        if self.phase == "sample":
            kept = rows if self.final_state else 0        # the kernel writes no final state into 0 rows
            final = np.empty((kept, len(self.order)), np.float32)
            final_trace, final_calcium = (np.empty((kept, self.n_neurons), np.float32) for _ in range(2))
            args = (event_mode, probabilities, events, keys, learns, steps, self.synapses, self.neurons,
                    self.constants, weights, trace, calcium, clip_first, out["slot"], out["counts"], out["raster"],
                    out["astro"], final, final_trace, final_calcium, self.order)
            _run_compiled(compiled_for_rule(code).rows, args, _without_rows(args))
            if not self.final_state:
                final = final_trace = final_calcium = None
        else:
            trace, calcium = trace.copy(), calcium.copy()
            self._run_stream(code, event_mode, probabilities, events, keys, learns, steps, weights, trace, calcium,
                             clip_first, out)
            final = self.from_engine_order(weights)[np.newaxis]
            final_trace, final_calcium = trace[np.newaxis], calcium[np.newaxis]
        return PlasticRun(out["counts"], out["raster"], out["astro"], final, final_trace, final_calcium)
