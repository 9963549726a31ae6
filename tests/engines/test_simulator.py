"""`simulate` on both engines against closed forms, hand-computed cases and a plain NumPy step loop."""
import math

import numpy as np
import pytest

from lsm_core import Network, simulate
from lsm_core.engines.interface import synapse_weights
from lsm_core.engines.simulator import liquid_simulator
from lsm_core.model.randomness import sample_keys, step_pixel_uniform_np

TAU_V, THRESH = 64.0, 20.0


def tiny_net(n_exc=1, n_inh=0, n_input=1, synapses=(), bias=None):
    """A hand-built liquid: synapses are (post, pre, weight) with neuron indices in the neuron
    order of docs/model.md#conventions."""
    n = n_exc + n_inh + n_input
    W = np.zeros((n, n), np.float32)
    for post, pre, w in synapses:
        W[post, pre] = w
    ones = np.ones(n, np.float32)
    return Network(W=W, mask=W != 0, tau_v=TAU_V * ones, v_thresh=THRESH * ones,
                   bias=np.zeros(n, np.float32) if bias is None else np.asarray(bias, np.float32),
                   t_refrac=2 * ones, tau_syn=ones, coords=np.zeros((n_exc + n_inh, 3), np.int32),
                   n_exc=n_exc, n_inh=n_inh, n_input=n_input, meta={"dims": [n_exc + n_inh, 1, 1]})


@pytest.fixture(params=["xla", "events"])
def engine(request):
    """Each whole-loop test runs on both engines: the same model, the same expectations."""
    return request.param


def spike_times(result, neuron, row=0):
    return list(np.nonzero(result.spikes[row, :, neuron])[0])


def events(n_input, steps, on):
    """Event-mode input [1, steps, n_input] with spikes at the (t, channel) pairs in `on`."""
    x = np.zeros((1, steps, n_input), np.uint8)
    for t, channel in on:
        x[0, t, channel] = 1
    return x


# ----------------------------------------------------------------------------------------------
# Reference: a plain per-step NumPy loop (float64) written straight from
# docs/model.md#one-millisecond-step-by-step
# ----------------------------------------------------------------------------------------------

def reference_run(net, weights, inputs, steps, keys=None, input_current=100.0):
    syn = net.synapses()
    W = np.zeros((net.n_neurons, net.n_neurons))
    W[syn.post, syn.pre] = weights
    batch = inputs.shape[0]
    V = np.zeros((batch, net.n_neurons))
    R = np.zeros_like(V)
    s = np.full_like(V, 20.0)
    raster = np.zeros((batch, steps, net.n_neurons), bool)
    for t in range(steps):
        S = (V * (1 - np.clip(R, 0, 1)) >= net.v_thresh).astype(float)        # 1
        V = V * (1 - S)                                                           # 2
        raster[:, t] = S > 0
        s = np.where(S > 0, 0.0, s)                                               # 4
        if inputs.ndim == 3:
            x = inputs[:, t, :].astype(float)
        else:
            x = (step_pixel_uniform_np(keys, t, net.n_input) < inputs).astype(float)
        I = np.concatenate([np.zeros((batch, net.n_res)), input_current * x], axis=1)
        kernel = np.exp(-s / net.tau_syn) / net.tau_syn
        V = V + kernel @ W.T + I + net.bias - V / net.tau_v                       # 5
        s = np.minimum(s + 1, 100.0)                                              # 6
        R = (R - 1) * (1 - S) + net.t_refrac * S                                  # 7
    return raster


# ----------------------------------------------------------------------------------------------
# Whole compiled loop: hand-computed cases
# ----------------------------------------------------------------------------------------------

def test_constant_input_drives_input_neuron_every_third_step(engine):
    net = tiny_net(n_exc=1, n_input=1)
    res = simulate(net, np.ones((1, 12, 1), np.uint8), engine=engine)
    # event at t -> spike at t+1; two refractory steps -> period 3
    assert spike_times(res, neuron=1) == [1, 4, 7, 10]


def test_bias_charging_gives_first_spike_at_closed_form_time(engine):
    bias = 0.5
    net = tiny_net(n_exc=1, n_input=1, bias=[bias, 0.0])
    res = simulate(net, np.zeros((1, 200, 1), np.uint8), engine=engine)
    k = np.arange(200)
    v_before_step = bias * 64 * (1 - (63 / 64) ** k)            # V checked at step k
    first = int(np.argmax(v_before_step >= THRESH))
    times = spike_times(res, neuron=0)
    assert times[0] == first == 63
    # after the spike: reset to 0, two refractory steps do not stop charging, same curve again
    assert times[1] - times[0] == first


def test_one_step_latency_input_event_to_reservoir_spike(engine):
    net = tiny_net(n_exc=1, n_input=1, synapses=[(0, 1, 25.0)])
    res = simulate(net, events(1, 10, [(3, 0)]), engine=engine)
    assert spike_times(res, neuron=1) == [4]        # input neuron: one step after the event
    assert spike_times(res, neuron=0) == [5]        # reservoir: one step after that


def test_kernel_restarts_on_a_new_presynaptic_spike_instead_of_summing(engine):
    w = 12.0                        # one spike alone never brings the target to threshold
    net = tiny_net(n_exc=1, n_input=1, synapses=[(0, 1, w)])
    alone = simulate(net, events(1, 40, [(0, 0)]), engine=engine)
    assert spike_times(alone, neuron=0) == []
    twice = simulate(net, events(1, 12, [(0, 0), (3, 0)]), engine=engine)
    assert spike_times(twice, neuron=1) == [1, 4]
    # scalar replay: only the latest presynaptic spike drives the kernel
    V, fired = 0.0, None
    for t in range(12):
        if V >= THRESH:
            fired = t
            break
        last = max([u for u in (1, 4) if u <= t], default=None)
        drive = math.exp(-(t - last)) if last is not None else math.exp(-min(20 + t, 100))
        V = V + w * drive - V / TAU_V
    assert fired is not None and spike_times(twice, neuron=0) == [fired]


def test_inhibitory_weight_lowers_membrane_without_lower_bound(engine):
    net = tiny_net(n_exc=1, n_inh=0, n_input=2, synapses=[(0, 1, 25.0), (0, 2, -30.0)])
    # the inhibitory input arrives together with the excitatory one: no spike
    res = simulate(net, events(2, 10, [(2, 0), (2, 1)]), engine=engine)
    assert spike_times(res, neuron=0) == []
    res = simulate(net, events(2, 10, [(2, 0)]), engine=engine)
    assert spike_times(res, neuron=0) == [4]


# ----------------------------------------------------------------------------------------------
# Compiled loop against the plain loop, batching and input draws
# ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_liquid():
    return Network.generate(dims=(4, 4, 4), n_input=30, seed=3)


def test_event_mode_matches_reference_loop(small_liquid, engine):
    net = small_liquid
    rng = np.random.default_rng(0)
    inputs = (rng.random((3, 80, net.n_input)) < 0.15).astype(np.uint8)
    weights = synapse_weights(net, 4.0)
    res = simulate(net, inputs, weight_scale=4.0, engine=engine)
    assert res.spikes[:, :, : net.n_res].sum() > 50          # the liquid is active
    np.testing.assert_array_equal(res.spikes, reference_run(net, weights, inputs, 80))
    np.testing.assert_array_equal(res.counts, res.spikes[:, :, : net.n_res].sum(axis=1))


def test_image_mode_matches_reference_loop_with_the_same_draws(small_liquid, engine):
    net = small_liquid
    rng = np.random.default_rng(1)
    probabilities = rng.random((4, net.n_input)).astype(np.float32) * 0.5
    res = simulate(net, probabilities, steps=60, weight_scale=4.0, seed=9, engine=engine)
    keys = sample_keys(9, "simulate", np.arange(4))
    expected = reference_run(net, synapse_weights(net, 4.0), probabilities, 60, keys=keys)
    np.testing.assert_array_equal(res.spikes, expected)


def test_row_of_a_batch_equals_the_sample_run_alone(small_liquid, engine):
    net = small_liquid
    sim = liquid_simulator(net, synapse_weights(net, 3.0), engine=engine)
    rng = np.random.default_rng(2)
    probabilities = rng.random((5, net.n_input)).astype(np.float32) * 0.4
    keys = sample_keys(4, "train", np.arange(10, 15))
    counts, raster = sim.run(probabilities, keys, steps=50, record_rows=[3])
    alone_counts, alone_raster = sim.run(probabilities[3:4], keys[3:4], steps=50, record_rows=[0])
    np.testing.assert_array_equal(counts[3], alone_counts[0])
    np.testing.assert_array_equal(raster[0], alone_raster[0])


def test_weight_scale_keeps_signs_and_dense_weights_view(engine):
    net = tiny_net(n_exc=1, n_input=2, synapses=[(0, 1, 1.0), (0, 2, -1.0)])
    res = simulate(net, np.zeros((2, 5, 2), np.uint8), weight_scale=2.5, engine=engine)
    assert res.weights.shape == (2, 3, 3)
    np.testing.assert_array_equal(res.weights[1, 0], [0.0, 2.5, -2.5])
    stream = simulate(net, np.zeros((2, 5, 2), np.uint8), phase="init")     # one stream of snapshots
    assert stream.weights.shape == (1, 3, 3)
    np.testing.assert_array_equal(stream.weights[0, 0], [0.0, 1.0, -1.0])


def test_bad_arguments_are_refused():
    net = tiny_net()
    with pytest.raises(ValueError, match="rule"):
        simulate(net, np.zeros((1, 3, 1)), rule="hebb")
    with pytest.raises(ValueError, match="astro_w"):
        simulate(net, np.zeros((1, 3, 1)), rule="nalsm")
    with pytest.raises(ValueError, match="rate_threshold"):
        simulate(net, np.zeros((1, 3, 1)), rule="apstdp", params={"rate_range": 1.0})
    with pytest.raises(ValueError, match="steps"):
        simulate(net, np.zeros((1, 1), np.float32))
    with pytest.raises(ValueError, match="input channels"):
        simulate(net, np.zeros((1, 3, 4)))
    with pytest.raises(ValueError, match="unknown simulation parameter"):
        simulate(net, np.zeros((1, 3, 1)), params={"tau": 3})
