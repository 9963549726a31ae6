"""The neuron's step functions (lsm_core.model.neuron) against closed forms and hand-computed cases."""
import math

import numpy as np
import pytest
import tensorflow as tf

from lsm_core.model.neuron import (
    LiquidState,
    NeuronParams,
    initial_state,
    integrate,
    spike_and_reset,
    synaptic_kernel,
)

TAU_V, THRESH = 64.0, 20.0


def params(n):
    ones = tf.ones([n])
    return NeuronParams(TAU_V * ones, THRESH * ones, 0 * ones, 2 * ones, ones, 100.0)


def test_leak_without_input_is_geometric():
    state = LiquidState(tf.constant([[10.0]]), tf.zeros([1, 1]), tf.zeros([1, 1]), tf.constant([[20.0]]))
    p = params(1)
    for _ in range(50):
        spikes, membrane, since = spike_and_reset(state, p)
        state = integrate(spikes, membrane, since, state.refractory, tf.zeros([1, 1]), p)
    assert state.membrane.numpy()[0, 0] == pytest.approx(10.0 * (63 / 64) ** 50, rel=1e-5)


def test_charging_curve_under_constant_current_matches_closed_form():
    state, p, current = initial_state(1, 1), params(1), tf.constant([[0.25]])
    trace = []
    for _ in range(100):
        spikes, membrane, since = spike_and_reset(state, p)
        state = integrate(spikes, membrane, since, state.refractory, current, p)
        trace.append(state.membrane.numpy()[0, 0])
    k = np.arange(1, 101)
    np.testing.assert_allclose(trace, 0.25 * 64 * (1 - (63 / 64) ** k), rtol=1e-5)


def test_spike_resets_membrane_and_starts_refractory_counter():
    state = LiquidState(tf.constant([[25.0, 19.0]]), tf.zeros([1, 2]), tf.zeros([1, 2]), tf.fill([1, 2], 20.0))
    spikes, membrane, since = spike_and_reset(state, params(2))
    np.testing.assert_array_equal(spikes.numpy(), [[1, 0]])
    np.testing.assert_array_equal(membrane.numpy(), [[0, 19]])
    np.testing.assert_array_equal(since.numpy(), [[0, 20]])
    new = integrate(spikes, membrane, since, state.refractory, tf.zeros([1, 2]), params(2))
    np.testing.assert_array_equal(new.refractory.numpy(), [[2, -1]])
    np.testing.assert_array_equal(new.since_spike.numpy(), [[1, 21]])


def test_refractory_neuron_cannot_spike_but_keeps_integrating():
    state = LiquidState(tf.constant([[50.0]]), tf.zeros([1, 1]), tf.constant([[1.0]]), tf.constant([[3.0]]))
    spikes, membrane, _ = spike_and_reset(state, params(1))
    assert spikes.numpy()[0, 0] == 0 and membrane.numpy()[0, 0] == 50.0


def test_synaptic_kernel_values():
    s = tf.constant([[0.0, 1.0, 20.0]])
    np.testing.assert_allclose(synaptic_kernel(s, tf.ones([3])).numpy(), [[1.0, math.exp(-1), math.exp(-20)]], rtol=1e-6)
    np.testing.assert_allclose(synaptic_kernel(s, 2.0 * tf.ones([3])).numpy(),
                               [[0.5, 0.5 * math.exp(-0.5), 0.5 * math.exp(-10)]], rtol=1e-6)
