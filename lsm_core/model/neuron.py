"""The neuron and its synapses (docs/model.md#one-millisecond-step-by-step): pure functions of an explicit
`LiquidState`, one step in, one step out.

`spike_and_reset`, `synaptic_kernel` and `integrate` are the steps of one millisecond in their order;
`shared_weight_current` and `per_row_weight_current` turn the presynaptic kernels into the current that
`integrate` adds.  The XLA engine (`lsm_core.engines.xla`) composes them into its compiled time loops;
the event-driven engine (`lsm_core.engines.event_driven`) computes the same step with numba and is
checked against them.

Shapes: B = batch rows, N = all neurons (reservoir then input), N_res = reservoir neurons.  Times in ms;
membrane, threshold and bias in the paper's dimensionless voltage units.
"""
from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf

from lsm_core.config import PAPER

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
# One step: the maths (docs/model.md#one-millisecond-step-by-step)
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


def per_row_weight_current(pre_kernel, weights):
    """Synaptic current into the reservoir with weights of their own in every row (plasticity).

    Synapses of one row group of `SynapseTable` (n postsynaptic neurons, D slots each): pre_kernel is
    the kernel of each slot's presynaptic neuron [B, n, D], weights [B, n, D] -> [B, n].
    """
    return tf.reduce_sum(pre_kernel * weights, axis=2)
