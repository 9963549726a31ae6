"""The XLA engine's own machinery (lsm_core.engines.xla): data parallelism over devices and the synapse
table of its learning loop.  Its dynamics are checked with the event-driven engine's in test_simulator.py."""
import numpy as np

from lsm_core import Network
from lsm_core.engines.interface import SimParams, synapse_weights
from lsm_core.engines.xla import PlasticSimulator, SynapseTable
from lsm_core.model.randomness import sample_keys


def test_batch_split_over_two_devices_gives_the_single_device_result():
    """Data parallelism, checked on two logical CPU devices in a fresh interpreter."""
    import subprocess
    import sys
    code = """
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from lsm_core import Network
from lsm_core.model.randomness import sample_keys
from lsm_core.engines.interface import synapse_weights
from lsm_core.engines.xla import LiquidSimulator
net = Network.generate(dims=(3, 3, 3), n_input=20, seed=1)
p = np.random.default_rng(0).random((5, 20)).astype(np.float32) * 0.5
keys = sample_keys(1, "train", np.arange(5))
one = LiquidSimulator(net, synapse_weights(net, 4.0)).run(p, keys, steps=40, record_rows=[0, 3, 4])
two = LiquidSimulator(net, synapse_weights(net, 4.0), devices=["/CPU:0", "/CPU:1"]).run(
    p, keys, steps=40, record_rows=[0, 3, 4])
assert one[0].sum() > 0
np.testing.assert_array_equal(one[0], two[0]); np.testing.assert_array_equal(one[1], two[1])
print("same")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("same")


def test_plastic_sample_batch_split_over_two_devices_gives_the_single_device_result():
    """The learning sample phase split over two logical CPU devices (rows 0-1 and 2-4), in a fresh
    interpreter: every output equals the one-device run, and with the reference batch quirk (an
    LSM+STDP option: under NALSM the astrocyte still depresses every row) only global row 0 learns,
    the second slice has no learning row at all."""
    import subprocess
    import sys
    code = """
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from lsm_core import Network
from lsm_core.model.randomness import sample_keys
from lsm_core.engines.interface import SimParams, synapse_weights
from lsm_core.engines.xla import PlasticSimulator
net = Network.generate(dims=(3, 3, 3), n_input=20, seed=1)
w = synapse_weights(net, 3.0)
p = np.random.default_rng(0).random((5, 20)).astype(np.float32) * 0.5
keys = sample_keys(1, "train", np.arange(5))
for rule, quirk in (("nalsm", False), ("stdp", True)):
    def run(devices):
        sim = PlasticSimulator(net, w, rule, "sample", SimParams(astro_w=0.015), reference_batch_quirk=quirk,
                               devices=devices)
        return sim.run(p, keys, steps=40)
    one, two = run(None), run(["/CPU:0", "/CPU:1"])
    assert one.counts.sum() > 0
    for name, a, b in zip(one._fields, one, two):
        assert a.shape == b.shape and np.array_equal(a, b), (quirk, name)
    learned = np.any(two.weights != w, axis=1)
    assert learned.tolist() == ([True] + [not quirk] * 4), (quirk, learned)
print("same")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("same")


# ----------------------------------------------------------------------------------------------
# The synapse table of the learning loop (sliced ELL: row groups by in-degree)
# ----------------------------------------------------------------------------------------------

def test_synapse_table_holds_every_synapse_once_and_round_trips():
    net = Network.generate(dims=(4, 4, 4), n_input=30, seed=5)
    syn = net.synapses()
    table = SynapseTable.build(net, w_max=3.0, n_groups=3)
    assert len(table.groups) == 3
    assert sorted(np.concatenate([g.rows for g in table.groups]).tolist()) == list(range(net.n_res))
    assert np.array_equal(table.order[table.inverse], np.arange(net.n_res))
    used = np.concatenate([g.synapse[g.synapse >= 0] for g in table.groups])
    assert sorted(used.tolist()) == list(range(len(syn.post)))              # each synapse in one slot
    for g in table.groups:
        filled = g.synapse >= 0
        assert g.pre.shape[1] == filled.sum(axis=1).max()                   # padded to the group's own degree
        assert np.array_equal(g.pre[filled], syn.pre[g.synapse[filled]])
        assert np.array_equal(syn.post[g.synapse[filled]], np.broadcast_to(g.rows[:, None], g.pre.shape)[filled])
        empty = ~filled                                                      # empty slots: bounds [0, 0]
        assert not g.sign[empty].any() and not g.lower[empty].any() and not g.upper[empty].any()
    degree = np.bincount(syn.post, minlength=net.n_res)
    widths = [g.pre.shape[1] for g in table.groups]
    assert widths == sorted(widths) and widths[-1] == degree.max()          # sorted by in-degree
    weights = np.random.default_rng(0).normal(size=(2, len(syn.post))).astype(np.float32)
    assert np.array_equal(table.to_list(table.to_table(weights)), weights)


def test_number_of_row_groups_does_not_change_the_dynamics():
    net = Network.generate(dims=(4, 4, 4), n_input=30, seed=6)
    probabilities = np.random.default_rng(1).random((3, 30)).astype(np.float32) * 0.3
    keys = sample_keys(0, "simulate", np.arange(3))
    runs = []
    for n_groups in (1, 4):
        sim = PlasticSimulator(net, synapse_weights(net, 3.0), "nalsm", "sample", SimParams(astro_w=0.015),
                               n_groups=n_groups)
        assert len(sim.table.groups) == n_groups
        runs.append(sim.run(probabilities, keys, steps=60))
    assert np.array_equal(runs[0].spikes, runs[1].spikes)
    np.testing.assert_allclose(runs[0].weights, runs[1].weights, rtol=0, atol=1e-6)


def test_xla_program_lists_a_value_for_every_parameter_of_the_program_run_compiles():
    """`xla_program`: the serialized HLO of the sample-phase loop (what `benchmarks/xla_program.py` runs
    through JAX elsewhere) and one argument per parameter of its entry computation, each of the
    parameter's shape and element type; `run` gives the same results before and after the export."""
    from tensorflow.compiler.xla.service import hlo_pb2

    net = Network.generate(dims=(3, 3, 3), n_input=20, seed=1)
    sim = PlasticSimulator(net, synapse_weights(net, 3.0), "nalsm", "sample", SimParams(astro_w=0.015))
    p = np.random.default_rng(0).random((4, 20)).astype(np.float32) * 0.5
    keys = sample_keys(1, "train", np.arange(4))
    before = sim.run(p, keys, steps=15, record=False)
    program = sim.xla_program(p, keys, steps=15)
    module = hlo_pb2.HloModuleProto.FromString(program.hlo)
    parameters = module.host_program_shape.parameters
    assert len(parameters) == len(program.arguments) > 9
    element_type = {np.dtype(np.float32): 11, np.dtype(np.int32): 4, np.dtype(np.uint32): 8}
    for shape, value in zip(parameters, program.arguments):
        assert list(shape.dimensions) == list(value.shape)
        assert shape.element_type == element_type[value.dtype]
    assert np.array_equal(program.arguments[0], p) and np.array_equal(program.arguments[1], keys)
    after = sim.run(p, keys, steps=15, record=False)
    np.testing.assert_array_equal(before.counts, after.counts)
    np.testing.assert_array_equal(before.weights, after.weights)
