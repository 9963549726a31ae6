"""The init phase's choice between one thread and several, slice by slice (engines/thread_choice.py)."""
import numpy as np

from lsm_core import Network
from lsm_core.engines import thread_choice
from lsm_core.engines.event_driven import EventPlasticSimulator
from lsm_core.engines.interface import SimParams, synapse_weights
from lsm_core.engines.thread_choice import ThreadChoice
from lsm_core.model.randomness import sample_keys


def simulate_choice(choice, seconds_per_step, samples=20_000, steps=20, rounds=None):
    """Drive `choice` over a stream whose true seconds per step are `seconds_per_step[threaded]` (a function of
    the slice's index, for a machine whose load changes); returns the slices' (threaded, samples)."""
    done, slices = 0, []
    while done < samples and (rounds is None or len(slices) < rounds):
        threaded, n = choice.next_slice(samples - done, steps)
        choice.record(threaded, n * steps, n * steps * seconds_per_step(threaded, len(slices)))
        slices.append((threaded, n))
        done += n
    return slices


def time_spent(slices, seconds_per_step, steps=20):
    return sum(n * steps * seconds_per_step(threaded, k) for k, (threaded, n) in enumerate(slices))


def test_on_a_quiet_machine_the_threads_are_kept_and_the_other_way_is_seldom_tried():
    quiet = lambda threaded, k: 10e-6 if threaded else 15e-6          # threads 1.5x faster
    slices = simulate_choice(ThreadChoice(True), quiet, samples=100_000)    # 20 s, 400 slices
    assert time_spent(slices, quiet) <= 1.01 * 100_000 * 20 * 10e-6
    assert sum(n for threaded, n in slices if threaded) > 0.97 * 100_000


def test_on_a_busy_machine_one_thread_is_chosen_and_costs_at_most_a_few_per_cent():
    busy = lambda threaded, k: 50e-6 if threaded else 10e-6           # threads 5x slower (measured 3.5-5.5x)
    slices = simulate_choice(ThreadChoice(True), busy, samples=100_000)
    assert time_spent(slices, busy) <= 1.02 * 100_000 * 20 * 10e-6
    # every slice after the first two (one sample, then the other way sized by the first) aims at about SLICE_S
    # of wall time, a probe at a quarter of it
    seconds = [n * 20 * busy(threaded, k) for k, (threaded, n) in enumerate(slices)][2:-1]
    assert max(seconds) <= 1.05 * thread_choice.SLICE_S
    assert min(seconds) >= 0.9 * thread_choice.PROBE_FRACTION * thread_choice.SLICE_S


def test_a_machine_that_becomes_busy_and_quiet_again_is_followed():
    changing = lambda threaded, k: (50e-6 if threaded else 10e-6) if 100 <= k < 300 else (10e-6 if threaded
                                                                                           else 15e-6)
    slices = simulate_choice(ThreadChoice(True), changing, samples=10**7, rounds=500)
    ways = [threaded for threaded, _ in slices]
    assert not any(ways[150:300]) or sum(ways[150:300]) <= 4     # busy: one thread, with rare probes
    assert sum(ways[400:]) >= 95                                   # quiet again: back to the threads


def test_without_a_threaded_way_one_slice_runs_the_whole_stream():
    choice = ThreadChoice(False)
    assert choice.next_slice(250, 20) == (False, 250)


def test_a_stream_in_slices_on_alternating_ways_is_the_stream_in_one_call():
    """Whatever the choice does (here: a slice of one sample on alternating ways), the numbers are those of
    one call on one thread: sum_j W_ij and the first step's clip are carried through the slices."""
    class Alternating(ThreadChoice):
        def next_slice(self, remaining, steps_per_sample):
            self.turn = not getattr(self, "turn", False)
            return self.turn, 1

    net = Network.generate(dims=(4, 4, 4), n_input=30, seed=4)
    probabilities = np.random.default_rng(12).random((6, net.n_input)).astype(np.float32) * 0.5
    keys = sample_keys(8, "init", np.arange(6))
    w = synapse_weights(net, 4.0)              # magnitudes above w_max: AP-STDP clips them at the first step
    params = SimParams(rate_threshold=0.5, rate_range=0.4)
    whole = EventPlasticSimulator(net, w, "apstdp", "init", params, threads=1).run(probabilities, keys, steps=25)
    sliced_sim = EventPlasticSimulator(net, w, "apstdp", "init", params, threads=2)
    sliced_sim.thread_choice = Alternating(True)
    sliced = sliced_sim.run(probabilities, keys, steps=25)
    assert whole.counts.sum() > 20
    for name in ("counts", "astro", "weights", "trace", "calcium"):
        np.testing.assert_array_equal(getattr(whole, name), getattr(sliced, name), err_msg=name)
