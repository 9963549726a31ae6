"""Plasticity maths (docs/model.md#plasticity, docs/model.md#the-astrocyte, docs/model.md#the-decays): pure
functions on explicit tensors, one step in, one step out.

The functions are elementwise over synapses (post i <- pre j, every post a reservoir neuron) and do
not care how the synapses are laid out: the simulator passes per-row weights and the pre- and
postsynaptic values already gathered to the same shape (`[B, ...synapses]`).  `sign` is +1 where the
presynaptic neuron is excitatory or an input neuron and -1 where it is inhibitory: the rules'
coefficients depend only on the presynaptic type.  Learning rate `lr`, astrocyte `astro` and its
weight and bias broadcast against the synapses (one value per batch row).

Each rule also has a scalar twin (`*_one`): the same formula, term for term and in the same order of
operations, for one synapse.  The event-driven engine (`engines/event_driven.py`) compiles the twins with numba
and applies them only to the synapses whose pre- or postsynaptic neuron spiked; the shared tests
(`tests/model/test_plasticity.py`) run every rule through both engines.
"""
from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf


class PlasticState(NamedTuple):
    """What learns and what it learns with; carried from step to step."""

    weights: tf.Tensor      # per-row weights [B, ...synapses]
    trace: tf.Tensor        # STDP trace x_tr [B, N]
    calcium: tf.Tensor      # AP-STDP calcium C [B, N] (~ firing rate in Hz)
    lr: tf.Tensor           # eta, one per row
    astro: tf.Tensor        # astrocyte A, one per row (the depressing learning rate of NALSM)
    astro_w: tf.Tensor      # w_A, one per row
    astro_bias: tf.Tensor   # b_A, one per row


def pair_terms(pre_trace, post_spikes, post_trace, pre_spikes):
    """Causal and anti-causal STDP terms per synapse: x_tr[pre] * S[post] and x_tr[post] * S[pre].

    The traces are those before this step's update, so spikes of the same step do not pair.
    """
    return pre_trace * post_spikes, post_trace * pre_spikes


def stdp_change(causal, anti_causal, lr, sign):
    """Plain STDP: +eta D+ - eta D- for excitatory/input pre, -eta D+ + eta D- for inhibitory pre."""
    return lr * sign * (causal - anti_causal)


def nalsm_change(causal, anti_causal, lr, astro, sign):
    """Astrocyte-modulated STDP: plain STDP with every depressing coefficient -eta replaced by -A."""
    excitatory = sign > 0
    return (tf.where(excitatory, lr, -astro) * causal
            + tf.where(excitatory, -astro, lr) * anti_causal)


def apstdp_change(causal, anti_causal, lr, sign, post_calcium, threshold: float, window: float):
    """AP-STDP: plain STDP's terms, potentiating parts only where the postsynaptic calcium is strictly
    inside (theta, theta + rho), depressing parts only where it is strictly inside (theta - rho, theta).

    post_calcium: calcium of each synapse's postsynaptic neuron, shaped like the terms.
    """
    terms = (lr * sign * causal, -lr * sign * anti_causal)
    ltp = tf.cast((post_calcium > threshold) & (post_calcium < threshold + window), tf.float32)
    ltd = tf.cast((post_calcium > threshold - window) & (post_calcium < threshold), tf.float32)
    return sum(ltp * tf.maximum(term, 0.0) + ltd * tf.minimum(term, 0.0) for term in terms)


# Scalar twins for one synapse (plain Python, compiled by numba in the event-driven engine).  The
# arguments are float32 scalars there; `excitatory` is True where the presynaptic neuron is excitatory
# or an input neuron (sign > 0).

def stdp_change_one(causal, anti_causal, lr, sign):
    """`stdp_change` for one synapse."""
    return lr * sign * (causal - anti_causal)


def nalsm_change_one(causal, anti_causal, lr, astro, excitatory):
    """`nalsm_change` for one synapse: the two coefficients are chosen first, as there (so that a compiled
    loop over synapses of one presynaptic type chooses them once, outside the loop)."""
    causal_coefficient = lr if excitatory else -astro
    anti_causal_coefficient = -astro if excitatory else lr
    return causal_coefficient * causal + anti_causal_coefficient * anti_causal


def apstdp_change_one(causal, anti_causal, lr, sign, post_calcium, threshold, window, zero):
    """`apstdp_change` for one synapse; `zero` is 0 in the arguments' float type."""
    ltp = (post_calcium > threshold) and (post_calcium < threshold + window)
    ltd = (post_calcium > threshold - window) and (post_calcium < threshold)
    total = zero
    for term in (lr * sign * causal, -lr * sign * anti_causal):
        gated = zero
        if ltp and term > zero:
            gated = term
        if ltd and term < zero:
            gated = gated + term
        total = total + gated
    return total


def clip_weights(weights, lower, upper):
    """Class bounds: excitatory [0, w_max], inhibitory [-w_max, 0], input [-w_max, w_max]."""
    return tf.clip_by_value(weights, lower, upper)


def trace_step(trace, spikes, decay: float, increment: float):
    """x_tr = d * (0.1 * S + x_tr): jump at a spike, then one step of decay."""
    return decay * (increment * spikes + trace)


def calcium_step(calcium, spikes, tau: float):
    """C = C - C / tau_C + S."""
    return calcium - calcium / tau + spikes


def astrocyte_drive(spikes, mask):
    """The astrocyte's input of a step, sum over neurons of mask * S: the reservoir spikes minus the
    input spikes of the neurons that feed it (mask [N]: +1, -1 or 0; spikes [B, N] -> [B])."""
    return tf.reduce_sum(spikes * mask, axis=1)


def astrocyte_step(astro, astro_w, astro_bias, drive, tau: float):
    """A += (w_A * drive + b_A - A) / tau_A, per row; `drive` (see `astrocyte_drive`) shaped like `astro`."""
    return astro + (astro_w * drive + astro_bias - astro) / tau


def decay_rates(state: PlasticState, factor: float) -> PlasticState:
    """Sample phase of NALSM and LSM+STDP: eta (kept >= 0), A, w_A and b_A each times 0.99 per step."""
    return state._replace(lr=tf.maximum(state.lr * factor, 0.0), astro=state.astro * factor,
                          astro_w=state.astro_w * factor, astro_bias=state.astro_bias * factor)
