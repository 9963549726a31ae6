"""The event-driven engine's own plumbing: its tables, its input draws, its resume and threading.

The model itself is pinned on both engines by the shared tests (`test_simulator.py`,
`test_plasticity.py`: closed forms, hand-computed plasticity steps, the float64 reference); here
only what is specific to the event-driven formulation.
"""
import numba
import numpy as np
import pytest

from lsm_core import Network, simulate
from lsm_core.engines.event_driven import (
    EventLiquidSimulator,
    EventPlasticSimulator,
    build_neurons,
    build_synapses,
    pixel_uniform,
)
from lsm_core.engines.interface import SimParams, StreamCarry, synapse_weights
from lsm_core.engines.simulator import liquid_simulator, resolve_engine
from lsm_core.engines.xla import PlasticSimulator
from lsm_core.model import plasticity as rules
from lsm_core.model.randomness import sample_keys, step_pixel_uniform_np


@pytest.fixture(scope="module")
def net():
    return Network.generate(dims=(4, 4, 4), n_input=30, seed=4)


@pytest.mark.parametrize("weight_order", ["pre", "post"])
def test_synapse_tables_list_every_synapse_once_by_pre_and_by_post(net, weight_order):
    tables, order = build_synapses(net, w_max=3.0, weight_order=weight_order)
    syn = net.synapses()
    assert sorted(order.tolist()) == list(range(len(syn.post)))
    pre = np.repeat(np.arange(net.n_neurons), np.diff(tables.pre_start).astype(np.int64))
    assert sorted(tables.pre_weight.tolist()) == sorted(tables.post_weight.tolist()) == list(range(len(syn.post)))
    np.testing.assert_array_equal(syn.pre[order[tables.pre_weight]], pre)          # grouped by presynaptic neuron
    np.testing.assert_array_equal(syn.post[order[tables.pre_weight]], tables.target)
    segment = tables.post_segment.astype(np.int64)
    np.testing.assert_array_equal(segment[1:, 0], segment[:-1, 3])                 # contiguous, in neuron order
    post = np.repeat(np.arange(net.n_res), segment[:, 3] - segment[:, 0])
    np.testing.assert_array_equal(syn.post[order[tables.post_weight]], post)       # grouped by postsynaptic one
    np.testing.assert_array_equal(syn.pre[order[tables.post_weight]], tables.post_pre)
    assert segment[0, 0] == 0 and segment[-1, 3] == tables.pre_start[-1] == len(syn.post)
    pre_class = np.asarray(net.neuron_class)[tables.post_pre]
    for cls in range(3):                                                            # exc, inh, input segments
        inside = np.concatenate([np.arange(a, b) for a, b in zip(segment[:, cls], segment[:, cls + 1])])
        assert (pre_class[inside] == cls).all()
    if weight_order == "pre":               # a fixed liquid's spreading loop reads weight p for synapse p
        np.testing.assert_array_equal(tables.pre_weight, np.arange(len(syn.post)))
    if weight_order == "post":              # the synapse list's order: the learning loops index weight c by c
        np.testing.assert_array_equal(order, np.arange(len(syn.post)))
        np.testing.assert_array_equal(tables.post_weight, np.arange(len(syn.post)))
    for index in (tables.pre_start, tables.target, tables.pre_weight, tables.post_segment, tables.post_pre):
        assert index.dtype.kind == "u"      # unsigned: the compiled loops skip negative-index wraparound
    classes = np.asarray(net.neuron_class)
    exc, inh = classes == 0, (classes != 0) & (np.arange(net.n_neurons) < net.n_res)
    assert (tables.lower[exc] == 0).all() and (tables.upper[inh] == 0).all()
    assert (tables.sign[inh] == -1).all() and (tables.sign[~inh] == 1).all()


def test_kernel_table_is_the_model_kernel_and_decays_by_a_constant_factor(net):
    neurons = build_neurons(net)
    s = np.arange(len(neurons.kernel))
    np.testing.assert_allclose(neurons.kernel, np.exp(-s), rtol=1e-15)
    np.testing.assert_allclose(neurons.kernel[1:] / neurons.kernel[:-1], neurons.kernel_decay, rtol=1e-12)


def test_compiled_draws_are_the_counter_based_draws_bit_for_bit():
    keys = sample_keys(7, "train", np.arange(5))
    for t in (0, 1, 249):
        np.testing.assert_array_equal(pixel_uniform(keys, t, 784), step_pixel_uniform_np(keys, t, 784))


def test_scalar_rule_twins_equal_the_tensor_rules():
    """The compiled one-synapse twins give the tensor rules' float32 numbers bit for bit."""
    import tensorflow as tf

    from lsm_core.engines import event_driven

    rng = np.random.default_rng(0)
    f, t = np.float32, tf.constant
    for _ in range(100):
        causal, anti, lr, astro = (f(x) for x in rng.random(4) * [0.3, 0.3, 0.2, 0.2])
        sign = f(rng.choice([-1.0, 1.0]))
        calcium, theta, rho = f(rng.random() * 4), f(1.5), f(1.0)
        assert event_driven._stdp(causal, anti, lr, sign) == rules.stdp_change(
            t(causal), t(anti), t(lr), t(sign)).numpy()
        assert event_driven._nalsm(causal, anti, lr, astro, sign > 0) == rules.nalsm_change(
            t(causal), t(anti), t(lr), t(astro), t(sign)).numpy()
        assert event_driven._apstdp(causal, anti, lr, sign, calcium, theta, rho, f(0)) == rules.apstdp_change(
            t(causal), t(anti), t(lr), t(sign), t(calcium), float(theta), float(rho)).numpy()


def test_init_stream_cut_into_calls_equals_one_call(net):
    """What the pipeline's init phase does at every checkpoint: resume the stream from its carry."""
    rng = np.random.default_rng(3)
    probabilities = rng.random((6, net.n_input)).astype(np.float32) * 0.4
    keys = sample_keys(2, "init", np.arange(6))
    sim = EventPlasticSimulator(net, synapse_weights(net, 3.0), "nalsm", "init", SimParams(astro_w=0.015))
    whole = sim.run(probabilities, keys, steps=20, record=False)
    first = sim.run(probabilities[:4], keys[:4], steps=20, record=False)
    rest = sim.run(probabilities[4:], keys[4:], steps=20, record=False,
                   start=StreamCarry(first.weights, first.trace, first.calcium))
    assert whole.counts.sum() > 20
    np.testing.assert_array_equal(whole.counts, np.concatenate([first.counts, rest.counts]))
    np.testing.assert_array_equal(whole.weights, rest.weights)
    np.testing.assert_array_equal(whole.trace, rest.trace)
    assert not np.array_equal(whole.weights[0], synapse_weights(net, 3.0))


def test_reference_batch_quirk_lets_only_row_zero_learn(net):
    probabilities = np.random.default_rng(0).random((4, net.n_input)).astype(np.float32) * 0.5
    keys = sample_keys(1, "train", np.arange(4))
    w = synapse_weights(net, 3.0)
    quirk = EventPlasticSimulator(net, w, "stdp", "sample", reference_batch_quirk=True).run(probabilities, keys, steps=40)
    assert np.any(quirk.weights != w, axis=1).tolist() == [True, False, False, False]
    xla = PlasticSimulator(net, w, "stdp", "sample", reference_batch_quirk=True).run(probabilities, keys, steps=40)
    np.testing.assert_array_equal(quirk.spikes, xla.spikes)


def test_recorded_rows_and_astrocyte_trace_match_the_xla_engine(net):
    probabilities = np.random.default_rng(5).random((5, net.n_input)).astype(np.float32) * 0.5
    keys = sample_keys(3, "valid", np.arange(5))
    w = synapse_weights(net, 3.0)
    events = EventPlasticSimulator(net, w, "nalsm", "sample", SimParams(astro_w=0.015))
    xla = PlasticSimulator(net, w, "nalsm", "sample", SimParams(astro_w=0.015))
    a = events.run(probabilities, keys, steps=50, record_rows=[4, 1])
    b = xla.run(probabilities, keys, steps=50, record_rows=[4, 1])
    assert a.spikes.shape == (2, 50, net.n_neurons) and a.spikes.any()
    np.testing.assert_array_equal(a.spikes, b.spikes)
    np.testing.assert_array_equal(a.counts, b.counts)
    np.testing.assert_allclose(a.astro, b.astro, rtol=1e-5)
    assert events.run(probabilities, keys, steps=50, record=False).spikes.shape == (0, 50, net.n_neurons)


def test_threads_do_not_change_the_result(net):
    probabilities = np.random.default_rng(6).random((6, net.n_input)).astype(np.float32) * 0.5
    keys = sample_keys(0, "test", np.arange(6))
    w = synapse_weights(net, 3.0)
    one = EventLiquidSimulator(net, w, threads=1).run(probabilities, keys, steps=60, record_rows=[0, 5])
    two = EventLiquidSimulator(net, w, threads=2).run(probabilities, keys, steps=60, record_rows=[0, 5])
    np.testing.assert_array_equal(one[0], two[0])
    np.testing.assert_array_equal(one[1], two[1])



@pytest.mark.parametrize("rule, params, scale", [
    ("stdp", {}, 3.0),
    ("nalsm", {"astro_w": 0.015}, 3.0),
    ("apstdp", {"rate_threshold": 0.5, "rate_range": 0.4}, 4.0),   # magnitudes 4 > w_max: the first-step clip
])
def test_init_phase_on_two_threads_equals_one_thread(net, rule, params, scale):
    """The init phase splits each step's synaptic work over two threads: the same numbers, bit for bit."""
    probabilities = np.random.default_rng(8).random((5, net.n_input)).astype(np.float32) * 0.5
    keys = sample_keys(4, "init", np.arange(5))
    w = synapse_weights(net, scale)
    runs = [EventPlasticSimulator(net, w, rule, "init", SimParams(**params), threads=threads)
            .run(probabilities, keys, steps=30) for threads in (1, 2)]
    assert runs[0].counts.sum() > 20 and not np.array_equal(runs[0].weights[0], w)
    for name in ("counts", "spikes", "astro", "weights", "trace", "calcium"):
        np.testing.assert_array_equal(getattr(runs[0], name), getattr(runs[1], name), err_msg=name)


def test_a_rules_loops_are_compiled_once_per_phase(net):
    """The loops' integer arguments are int64 in every call: numba compiles each loop once per rule and
    phase (a literal 0 or a parallel loop's uint64 index had it compile the same loop two or three times,
    20 s more on a learning rule's first run)."""
    from lsm_core.engines import event_driven

    probabilities = np.random.default_rng(3).random((3, net.n_input)).astype(np.float32) * 0.5
    for phase in ("sample", "init"):
        simulate(net, probabilities, rule="nalsm", phase=phase, params={"astro_w": 0.015}, steps=10,
                 engine="events")
    counters = {event_driven._run_stream: (2, 3), event_driven._run_stream_threaded: (2, 3),
                event_driven._parts_here: (3, 4), event_driven._parts_threaded: (3, 4)}
    for loop, positions in counters.items():
        for signature in loop.signatures:
            assert [str(signature[i]) for i in positions] == ["int64", "int64"], (loop, signature)


@pytest.mark.parametrize("rule, params", [("nalsm", {"astro_w": 0.015}), ("apstdp", {"rate_threshold": 0.5,
                                                                                       "rate_range": 0.4})])
def test_any_cut_of_the_reservoir_into_parts_gives_the_same_numbers(net, rule, params):
    """A step's synaptic work is cut into blocks of postsynaptic neurons; how many changes nothing."""
    from lsm_core.engines.event_driven import build_synapses

    probabilities = np.random.default_rng(9).random((4, net.n_input)).astype(np.float32) * 0.5
    keys = sample_keys(5, "init", np.arange(4))
    runs = []
    for parts in (1, 2, 3, net.n_res):
        sim = EventPlasticSimulator(net, synapse_weights(net, 3.0), rule, "init", SimParams(**params), threads=2)
        sim.synapses, _ = build_synapses(net, sim.params.w_max, "post", parts=parts)
        assert len(sim.synapses.part_start) == parts + 1
        runs.append(sim.run(probabilities, keys, steps=25))
    assert runs[0].counts.sum() > 20
    for run in runs[1:]:
        for name in ("counts", "astro", "weights", "trace", "calcium"):
            np.testing.assert_array_equal(getattr(runs[0], name), getattr(run, name), err_msg=name)


@pytest.mark.parametrize("engine", ["events", "xla"])
def test_a_sample_phase_without_final_state_gives_the_same_counts(net, engine):
    """`final_state=False` (the spike-count phase: 224 MB of weights a batch at 8000 neurons) returns the
    same counts, spikes and astrocyte, and no final weights, trace or calcium."""
    from lsm_core.engines.simulator import plastic_simulator

    probabilities = np.random.default_rng(11).random((3, net.n_input)).astype(np.float32) * 0.5
    keys = sample_keys(7, "train", np.arange(3))
    w = synapse_weights(net, 3.0)
    runs = [plastic_simulator(net, w, "nalsm", "sample", SimParams(astro_w=0.015), engine=engine,
                              final_state=final_state).run(probabilities, keys, steps=30)
            for final_state in (True, False)]
    assert runs[0].counts.sum() > 20 and runs[0].weights.shape == (3, len(w))
    assert runs[1].weights is None and runs[1].trace is None and runs[1].calcium is None
    for name in ("counts", "spikes", "astro"):
        np.testing.assert_array_equal(getattr(runs[0], name), getattr(runs[1], name), err_msg=name)


def test_the_parts_hold_about_equal_numbers_of_synapses(net):
    from lsm_core.engines.event_driven import build_synapses

    tables, _ = build_synapses(net, 3.0, "post", parts=2)
    start, cut, end = (int(x) for x in tables.part_start)
    assert start == 0 and end == net.n_res and 0 < cut < net.n_res
    in_part = [int(tables.post_segment[cut, 0]), len(tables.post_pre) - int(tables.post_segment[cut, 0])]
    assert abs(in_part[0] - in_part[1]) <= 2 * int(np.diff(tables.post_segment[:, [0, 3]]).max())
    target = tables.target.astype(np.int64)
    for j in range(net.n_neurons):         # each presynaptic neuron's synapses split at the cut
        first, middle, last = (int(x) for x in tables.pre_part[j])
        assert first == tables.pre_start[j] and last == tables.pre_start[j + 1]
        assert np.all(target[first:middle] < cut) and np.all(target[middle:last] >= cut)


def test_the_init_phase_uses_two_threads_only_where_numba_has_them_and_launches_them_quickly(net, monkeypatch):
    from lsm_core.engines import event_driven

    used = []
    compiled = event_driven.compiled_for_rule

    def spying(rule):
        kernels = compiled(rule)
        return kernels._replace(stream_threaded=lambda *args: used.append(1) or kernels.stream_threaded(*args))

    monkeypatch.setattr(event_driven, "compiled_for_rule", spying)
    probabilities = np.full((1, net.n_input), 0.3, np.float32)
    for threads in (1, 2):
        EventPlasticSimulator(net, synapse_weights(net, 3.0), "stdp", "init", threads=threads).run(
            probabilities, sample_keys(0, "init", np.arange(1)), steps=5)
    quick = event_driven.quick_thread_launch()
    assert quick == (numba.threading_layer() in ("omp", "tbb"))
    assert used == ([1] if quick and numba.config.NUMBA_NUM_THREADS > 1 else [])


def test_unequal_synaptic_time_constants_are_refused_with_the_way_out(net):
    odd = Network(**{**{name: getattr(net, name) for name in ("W", "mask", "tau_v", "v_thresh", "bias", "t_refrac",
                                                               "coords", "n_exc", "n_inh", "n_input", "meta")},
                     "tau_syn": np.linspace(1.0, 2.0, net.n_neurons).astype(np.float32)})
    with pytest.raises(ValueError, match="engine='xla'"):
        liquid_simulator(odd, synapse_weights(odd, 1.0), engine="events")


def test_engine_choice():
    assert resolve_engine("xla") == "xla" and resolve_engine("events") == "events"
    assert resolve_engine("auto", gpu=False) == "events" and resolve_engine("auto", gpu=True) == "xla"
    with pytest.raises(ValueError, match="engine"):
        resolve_engine("cuda")
    with pytest.raises(ValueError, match="engine"):
        simulate(Network.generate(dims=(2, 2, 2), n_input=3, seed=1), np.zeros((1, 3, 3)), engine="gpu")


def test_missing_numba_is_a_clear_error_naming_the_fix(net, monkeypatch):
    import builtins

    from lsm_core.errors import UserError

    real_import = builtins.__import__

    def no_event_engine(name, globals=None, locals=None, fromlist=(), level=0):
        if name == "lsm_core.engines" and fromlist and "event_driven" in fromlist:
            raise ImportError("No module named 'numba'")
        return real_import(name, globals, locals, fromlist, level)

    monkeypatch.setattr(builtins, "__import__", no_event_engine)
    with pytest.raises(UserError, match="numba.*--engine xla"):
        liquid_simulator(net, synapse_weights(net, 1.0), engine="events")


def test_a_process_compiles_only_while_no_other_process_does(tmp_path):
    """numba's cache on disk is not safe for two processes compiling one function at once (a later run can
    load the wrong machine code and crash), so a process's first call of a loop waits for `compiling()`."""
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    from lsm_core.engines.event_driven import compiling

    keys = np.arange(2, dtype=np.uint32)
    pixel_uniform(keys, 3, 5)                       # compiled and cached: the child only loads it
    child = ("import time, numpy as np\n"
             "from lsm_core.engines import event_driven as ed\n"
             "print('calling', flush=True)\n"
             "u = ed.pixel_uniform(np.arange(2, dtype=np.uint32), 3, 5)\n"
             "print(time.time(), u.shape, flush=True)\n")
    with compiling():                               # another process compiling beside the same cache
        process = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True,
                                   cwd=tmp_path, env={**os.environ,
                                                      "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
        assert process.stdout.readline().strip() == "calling"
        time.sleep(3.0)                             # without the lock the child would be done by now
        released = time.time()
    out, _ = process.communicate(timeout=120)
    done, shape = out.split(maxsplit=1)
    assert process.returncode == 0 and shape.strip() == "(2, 5)"
    assert float(done) >= released
