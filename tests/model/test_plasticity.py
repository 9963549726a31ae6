"""Plasticity (steps 3 and 8-11 of docs/model.md#one-millisecond-step-by-step, docs/model.md#plasticity,
docs/model.md#the-astrocyte, docs/model.md#the-decays, docs/model.md#the-init-phase): `simulate` against
hand-computed cases and against the independent float64 NumPy reference in `plasticity_reference.py`.

The hand-computed cases are checked on both implementations (the reference is validated by them too).
Hand-built liquids: a postsynaptic excitatory neuron P and a presynaptic neuron Q (excitatory,
inhibitory or an input neuron); a reservoir neuron is made to spike at step t by K = 9 input "driver"
neurons of weight 3 (= w_max, so they stay clipped at 3) receiving an event at t - 2: the drivers spike
at t - 1, P gets 27 >= 20 and spikes at t (docs/model.md#synapses-and-the-kernel: event at t -> input
spike at t + 1 -> reservoir spike at t + 2).  An input neuron Q spikes at t after an event at t - 1.
"""
import functools
import math
from types import SimpleNamespace

import numpy as np
import pytest

from lsm_core import Network, simulate
from tests.model.plasticity_reference import reference_simulate

D = 0.9047744744744745          # trace factor d
ETA0 = 0.15                     # eta_0 = initial astrocyte value
DECAY = 0.99                    # sample-phase decay of NALSM and LSM+STDP
W_MAX = 3.0
CAL = 1.0 - 1.0 / 1000.0        # calcium factor per step
K = 9                           # drivers per driven reservoir neuron
T_PAIR = 8                      # steps of a pair case


# ----------------------------------------------------------------------------------------------
# Two implementations behind one adapter
# ----------------------------------------------------------------------------------------------

def run_reference(net, inputs, rule, phase="sample", weight_scale=None, params=None):
    out = reference_simulate(net, inputs, rule=rule, phase=phase, weight_scale=weight_scale, params=params)
    return SimpleNamespace(**out)


def run_simulate(net, inputs, rule, phase="sample", weight_scale=None, params=None, engine="xla"):
    res = simulate(net, inputs, rule=rule, phase=phase, weight_scale=weight_scale, params=params, seed=0,
                   engine=engine)
    assert np.asarray(res.spikes).dtype == bool        # as docs/model.md#simulating-from-python says
    assert np.issubdtype(np.asarray(res.counts).dtype, np.integer)
    astro = getattr(res, "astro", None)
    calcium = getattr(res, "calcium", None)
    return SimpleNamespace(spikes=np.asarray(res.spikes), counts=np.asarray(res.counts),
                           weights=np.array(res.weights, dtype=np.float64),
                           astro=None if astro is None else np.asarray(astro, np.float64),
                           calcium=None if calcium is None else np.asarray(calcium, np.float64))


def run_xla(net, inputs, rule, phase="sample", weight_scale=None, params=None):
    return run_simulate(net, inputs, rule, phase, weight_scale, params, engine="xla")


def run_events(net, inputs, rule, phase="sample", weight_scale=None, params=None):
    return run_simulate(net, inputs, rule, phase, weight_scale, params, engine="events")


run_reference.atol = 1e-12      # float64
run_xla.atol = run_events.atol = 1e-6        # float32 weights near 3
IMPLS = pytest.mark.parametrize("run", [run_reference, run_xla, run_events], ids=["reference", "xla", "events"])
ENGINES = ("xla", "events")


@pytest.fixture(params=ENGINES)
def sim(request):
    """`run_simulate` on each engine: the same tests hold for both."""
    return functools.partial(run_simulate, engine=request.param)


# ----------------------------------------------------------------------------------------------
# Hand-built liquids
# ----------------------------------------------------------------------------------------------

def tiny_net(n_exc, n_inh, n_input, synapses, t_refrac=None):
    """Synapses are (post, pre, weight) in the neuron order of docs/model.md#conventions; the mask is
    where a weight is given."""
    n = n_exc + n_inh + n_input
    W = np.zeros((n, n), np.float32)
    mask = np.zeros((n, n), bool)
    for post, pre, w in synapses:
        W[post, pre] = w
        mask[post, pre] = True
    ones = np.ones(n, np.float32)
    return Network(W=W, mask=mask, tau_v=64 * ones, v_thresh=20 * ones, bias=0 * ones,
                   t_refrac=2 * ones if t_refrac is None else np.asarray(t_refrac, np.float32),
                   tau_syn=ones, coords=np.zeros((n_exc + n_inh, 3), np.int32),
                   n_exc=n_exc, n_inh=n_inh, n_input=n_input, meta={"dims": [n_exc + n_inh, 1, 1]})


def pair_net(pre, w, t_refrac_p=2.0):
    """P = neuron 0 (excitatory) with K drivers; Q (class `pre`) -> P with weight w; a reservoir Q has
    K drivers of its own."""
    n_exc, n_inh = {"exc": (2, 0), "inh": (1, 1), "input": (1, 0)}[pre]
    n_res = n_exc + n_inh
    n_input = 2 * K if pre != "input" else K + 1
    P = 0
    Q = 1 if pre != "input" else n_res + K
    p_drivers = [n_res + c for c in range(K)]
    q_drivers = [n_res + K + c for c in range(K)] if pre != "input" else []
    synapses = [(P, j, 3.0) for j in p_drivers] + [(Q, j, 3.0) for j in q_drivers] + [(P, Q, w)]
    t_refrac = np.full(n_res + n_input, 2.0)
    t_refrac[P] = t_refrac_p
    net = tiny_net(n_exc, n_inh, n_input, synapses, t_refrac)
    return net, SimpleNamespace(P=P, Q=Q, p_drivers=p_drivers, q_drivers=q_drivers, n_res=n_res)


def pair_events(net, lay, steps, t_p=None, t_q=None):
    """Events [steps, n_input] and the expected raster [steps, N] making P spike at t_p and Q at t_q."""
    x = np.zeros((steps, net.n_input), np.uint8)
    raster = np.zeros((steps, net.n_neurons), bool)
    if t_p is not None:
        x[t_p - 2, [j - lay.n_res for j in lay.p_drivers]] = 1
        raster[t_p - 1, lay.p_drivers] = True
        raster[t_p, lay.P] = True
    if t_q is not None:
        if lay.q_drivers:
            x[t_q - 2, [j - lay.n_res for j in lay.q_drivers]] = 1
            raster[t_q - 1, lay.q_drivers] = True
        else:
            x[t_q - 1, lay.Q - lay.n_res] = 1
        raster[t_q, lay.Q] = True
    return x, raster


def scalar_rates(rule, phase, raster, n_res, params=None):
    """Scalar loop of docs/model.md#the-astrocyte and docs/model.md#the-decays over one sample: eta and
    A in force at each step (before that step's updates) and A after each step."""
    p = dict(lr=ETA0, lr_decay=DECAY, astro_w=0.0, astro_tau=100.0, astro_bias_offset=0.0)
    p.update({k: v for k, v in (params or {}).items() if k in p})
    eta = a = p["lr"]
    w_a = p["astro_w"]
    b_a = p["lr"] * (1 + p["astro_bias_offset"])
    decays = phase == "sample" and rule in ("stdp", "nalsm")
    used_eta, used_a, after = [], [], []
    for t in range(raster.shape[0]):
        used_eta.append(eta)
        used_a.append(a)
        if rule == "nalsm":
            activity = int(raster[t, :n_res].sum()) - int(raster[t, n_res:].sum())
            a = a + (w_a * activity + b_a - a) / p["astro_tau"]
        if decays:
            eta = max(eta * p["lr_decay"], 0.0)
            a, w_a, b_a = a * p["lr_decay"], w_a * p["lr_decay"], b_a * p["lr_decay"]
        after.append(a)
    return np.array(used_eta), np.array(used_a), np.array(after)


def bounds(pre, w_max=W_MAX):
    return {"exc": (0.0, w_max), "inh": (-w_max, 0.0), "input": (-w_max, w_max)}[pre]


def pair_term(pre, t_p, t_q, rule, eta, dep, gate=None):
    """The change of W[P, Q] by the one pairing of a P spike at t_p and a Q spike at t_q
    (docs/model.md#the-trace-and-the-pair-terms).
    gate(c, positive) -> bool decides the AP-STDP windows from P's calcium c at the pairing step."""
    if t_p is None or t_q is None or t_p == t_q:
        return 0.0                                    # no pair (or same step: trace updated after)
    causal = t_q < t_p
    t = max(t_p, t_q)
    x = 0.1 * D ** abs(t_p - t_q)                     # trace of the earlier neuron, before its update
    positive = causal == (pre != "inh")               # exc/input: +eta D+; inh: +eta D-
    if positive:
        term = eta[t] * x
    else:
        term = -(dep[t] if rule == "nalsm" else eta[t]) * x
    if rule == "apstdp":
        c = 1.0 if causal else CAL ** (t_q - t_p)     # P spiked only at t_p
        if not gate(c, positive):
            return 0.0
    return term


def window_gate(theta, rho):
    def gate(c, positive):
        return theta < c < theta + rho if positive else theta - rho < c < theta
    return gate


def calcium_from_raster(raster):
    """C = C - C/1000 + S from C = 0 over a raster [T, N]: sum of CAL^(age) over the spikes."""
    steps = raster.shape[0]
    return (raster * CAL ** (steps - 1 - np.arange(steps))[:, None]).sum(axis=0)


RULE_CONFIGS = {
    "stdp": ("stdp", None),
    "nalsm": ("nalsm", {"astro_w": 0.05}),
    "apstdp-ltp": ("apstdp", {"rate_threshold": 0.5, "rate_range": 1.0}),     # LTP (0.5, 1.5) open at C ~ 1
    "apstdp-ltd": ("apstdp", {"rate_threshold": 1.5, "rate_range": 1.0}),     # LTD (0.5, 1.5) open at C ~ 1
}


def check_pair_rows(run, net, lay, rule, params, rows, pre, w, phase="sample", w_max=W_MAX):
    """Run the rows [(t_p, t_q), ...] as one sample-phase batch and check every output by hand."""
    built = [pair_events(net, lay, T_PAIR, t_p, t_q) for t_p, t_q in rows]
    inputs = np.stack([x for x, _ in built])
    res = run(net, inputs, rule, phase, params=params)
    rasters = np.stack([r for _, r in built])
    np.testing.assert_array_equal(res.spikes, rasters)
    np.testing.assert_array_equal(res.counts, rasters[:, :, : lay.n_res].sum(axis=1))
    gate = window_gate(params["rate_threshold"], params["rate_range"]) if rule == "apstdp" else None
    W0 = np.asarray(net.W, np.float64)
    for b, (t_p, t_q) in enumerate(rows):
        eta, dep, after = scalar_rates(rule, phase, rasters[b], lay.n_res, params)
        expected = W0.copy()
        # drivers: causal increases only, clipped at w_max = their weight
        lo, hi = bounds(pre, w_max)
        expected[lay.P, lay.Q] = np.clip(w + pair_term(pre, t_p, t_q, rule, eta, dep, gate), lo, hi)
        np.testing.assert_allclose(res.weights[b], expected, rtol=0, atol=run.atol,
                                   err_msg=f"row {b}: P at {t_p}, Q at {t_q}")
        if rule == "nalsm":
            np.testing.assert_allclose(res.astro[b], after, rtol=1e-6, atol=0)
        else:
            assert res.astro is None
        if rule == "apstdp":
            np.testing.assert_allclose(res.calcium[b], calcium_from_raster(rasters[b]), rtol=1e-6)
        else:
            assert res.calcium is None
    return res


# ----------------------------------------------------------------------------------------------
# (a) hand-computed pairs
# ----------------------------------------------------------------------------------------------

@IMPLS
@pytest.mark.parametrize("config", list(RULE_CONFIGS))
@pytest.mark.parametrize("pre,w", [("exc", 1.0), ("inh", -1.0), ("input", -1.0)])
def test_causal_and_anticausal_pairs_by_presynaptic_class(run, config, pre, w):
    rule, params = RULE_CONFIGS[config]
    net, lay = pair_net(pre, w)
    # row 0: causal (Q at 2, P at 5); row 1: anti-causal (P at 2, Q at 5); row 2: P alone;
    # row 3: both at step 3 with no earlier spikes -- the same step does not pair (traces before the
    # update are 0; with the trace updated first, NALSM and AP-STDP would change the weight)
    res = check_pair_rows(run, net, lay, rule, params, [(5, 2), (2, 5), (4, None), (3, 3)], pre, w)
    changed = res.weights[:2, lay.P, lay.Q] != w
    if rule == "apstdp":
        # a window opens exactly one kind of term: LTP the positive ones, LTD the negative ones
        positive = np.array([pre != "inh", pre == "inh"])
        assert list(changed) == list(positive if config == "apstdp-ltp" else ~positive)
    else:
        assert changed.all()
    assert res.weights[2, lay.P, lay.Q] == w
    assert res.weights[3, lay.P, lay.Q] == w


def test_pair_values_written_out_for_plain_stdp():
    """The same numbers as above without any helper: 0.15 * 0.99^5 * 0.1 * d^3 at step 5."""
    change = 0.15 * 0.99 ** 5 * 0.1 * 0.9047744744744745 ** 3
    for pre, w, sign_causal in (("exc", 1.0, +1), ("inh", -1.0, -1), ("input", -1.0, +1)):
        net, lay = pair_net(pre, w)
        inputs = np.stack([pair_events(net, lay, T_PAIR, 5, 2)[0], pair_events(net, lay, T_PAIR, 2, 5)[0]])
        for run in (run_reference, run_xla, run_events):
            got = run(net, inputs, "stdp").weights[:, lay.P, lay.Q]
            np.testing.assert_allclose(got, [w + sign_causal * change, w - sign_causal * change],
                                       rtol=0, atol=run.atol)


@IMPLS
def test_same_step_spikes_with_earlier_traces_use_the_traces_before_the_update(run):
    """P and Q each spiked once before and then spike together at step 6: the pairing at 6 uses their
    old traces only (AP-STDP, LTP open at P's calcium CAL^4 + 1 ~ 2: only the positive term)."""
    net, lay = pair_net("exc", 1.0)
    steps = 9
    x_p, r_p = pair_events(net, lay, steps, t_p=2)
    x_q, r_q = pair_events(net, lay, steps, t_q=3)
    x_both, r_both = pair_events(net, lay, steps, t_p=6, t_q=6)
    inputs = (x_p | x_q | x_both)[None]
    params = {"rate_threshold": 1.5, "rate_range": 1.0}          # LTP (1.5, 2.5), LTD (0.5, 1.5)
    res = run(net, inputs, "apstdp", params=params)
    np.testing.assert_array_equal(res.spikes[0], r_p | r_q | r_both)
    # step 3: Q spikes, P's trace 0.1 d, P's calcium CAL -> LTD open: -eta * 0.1 d
    # step 6: P (calcium CAL^4 + 1, LTP) gets +eta * x_Q = +eta * 0.1 d^3 (Q's trace before its update);
    #         the negative term -eta * x_P (0.1 d^4) is closed (calcium not in LTD)
    expected = 1.0 - ETA0 * 0.1 * D + ETA0 * 0.1 * D ** 3
    assert res.weights[0, lay.P, lay.Q] == pytest.approx(expected, abs=run.atol)


@IMPLS
@pytest.mark.parametrize("pre,w,rows,expected", [
    ("exc", 3.0, (5, 2), 3.0),             # excitatory at w_max
    ("exc", 3 - 2 ** -8, (5, 2), 3.0),           # ... reaching it
    ("exc", 2 ** -8, (2, 5), 0.0),           # excitatory at 0
    ("inh", -2 ** -8, (2, 5), 0.0),          # inhibitory at 0
    ("inh", -3.0, (5, 2), -3.0),           # inhibitory at -w_max
    ("inh", -3 + 2 ** -8, (5, 2), -3.0),
    ("input", 3.0, (5, 2), 3.0),           # input at +w_max
    ("input", -3.0, (2, 5), -3.0),         # input at -w_max
    ("input", -2 ** -8, (5, 2), None),       # input weights may change sign: no clip at 0
    ("input", 2 ** -8, (2, 5), None),
], ids=lambda v: str(v))
def test_clipping_at_each_class_bound(run, pre, w, rows, expected):
    net, lay = pair_net(pre, w)
    res = check_pair_rows(run, net, lay, "stdp", None, [rows], pre, w)
    got = res.weights[0, lay.P, lay.Q]
    if expected is None:
        change = 0.15 * 0.99 ** 5 * 0.1 * D ** 3
        assert got == pytest.approx(w + np.sign(w) * -change, abs=run.atol)
        assert np.sign(got) == -np.sign(w)
    else:
        assert got == expected


@IMPLS
def test_w_max_parameter_moves_the_bounds(run):
    """w_max = 5: the drivers (3) are no longer at the bound and grow; 5 - 2^-8 is clipped at 5."""
    w_max = 5.0
    for pre, w, rows, clipped in (("exc", 5 - 2 ** -8, (5, 2), 5.0), ("input", -5 + 2 ** -8, (2, 5), -5.0)):
        net, lay = pair_net(pre, w)
        inputs = pair_events(net, lay, T_PAIR, *rows)[0][None]
        res = run(net, inputs, "stdp", params={"w_max": w_max})
        expected = np.asarray(net.W, np.float64).copy()
        expected[lay.P, lay.Q] = clipped
        for post, drivers in ((lay.P, lay.p_drivers), (lay.Q, lay.q_drivers)):
            t_post = rows[0] if post == lay.P else rows[1]
            expected[post, drivers] = 3.0 + ETA0 * DECAY ** t_post * 0.1 * D
        np.testing.assert_allclose(res.weights[0], expected, rtol=0, atol=run.atol)


@IMPLS
@pytest.mark.parametrize("rule,params", [("stdp", None), ("nalsm", {"astro_w": 0.015}),
                                         ("apstdp", {"rate_threshold": 1.0, "rate_range": 1.0})])
def test_weights_beyond_the_bounds_are_clipped_at_the_first_step(run, rule, params):
    """docs/model.md#weight-bounds: after each update the weights are clipped by class -- all of them,
    also where the update was zero (weight_scale 5 > w_max 3, nothing spikes)."""
    net = tiny_net(2, 1, 1, [(0, 1, 1.0), (1, 2, -1.0), (0, 3, -1.0), (2, 3, 1.0)])
    res = run(net, np.zeros((1, 3, 1), np.uint8), rule, weight_scale=5.0, params=params)
    assert not res.spikes.any()
    expected = np.zeros((4, 4))
    expected[0, 1], expected[1, 2], expected[0, 3], expected[2, 3] = 3.0, -3.0, -3.0, 3.0
    np.testing.assert_array_equal(res.weights[0], expected)


@IMPLS
def test_static_rule_keeps_the_weights(run):
    net = tiny_net(2, 1, 1, [(0, 1, 1.0), (1, 2, -1.0), (0, 3, -1.0), (2, 3, 1.0)])
    res = run(net, np.ones((2, 6, 1), np.uint8), "static", weight_scale=5.0)
    assert res.spikes[:, :, 3].any()
    np.testing.assert_array_equal(res.weights[1], 5.0 * np.asarray(net.W))
    assert res.astro is None and res.calcium is None


# ----------------------------------------------------------------------------------------------
# NALSM astrocyte and decays
# ----------------------------------------------------------------------------------------------

@IMPLS
@pytest.mark.parametrize("astro_w,offset,more", [
    (0.05, 0.0, {}), (-0.2, 0.5, {}), (0.0, 0.0, {}),
    (0.05, 0.0, {"lr": 0.1, "lr_decay": 0.95, "astro_tau": 20.0}),
])
def test_astrocyte_and_decays_follow_the_scalar_loop(run, astro_w, offset, more):
    """Busy schedule: P at 2, 5, 8, 11, Q (input) at 3, 6, 9; A, eta, w_A, b_A decay every step."""
    net, lay = pair_net("input", 1.0)
    steps = 14
    x = np.zeros((steps, net.n_input), np.uint8)
    raster = np.zeros((steps, net.n_neurons), bool)
    for t_p in (2, 5, 8, 11):
        xi, ri = pair_events(net, lay, steps, t_p=t_p)
        x |= xi
        raster |= ri
    for t_q in (3, 6, 9):
        xi, ri = pair_events(net, lay, steps, t_q=t_q)
        x |= xi
        raster |= ri
    params = {"astro_w": astro_w, "astro_bias_offset": offset, **more}
    res = run(net, x[None], "nalsm", params=params)
    np.testing.assert_array_equal(res.spikes[0], raster)
    eta, a, after = scalar_rates("nalsm", "sample", raster, lay.n_res, params)
    np.testing.assert_allclose(res.astro[0], after, rtol=1e-6)
    if astro_w == 0.0 and offset == 0.0 and not more:     # A stays at b_A: both decay like eta
        np.testing.assert_allclose(after, ETA0 * DECAY ** np.arange(1, steps + 1), rtol=1e-12)
    # W[P, Q] (input pre): +eta x_Q at P's spikes, -A x_P at Q's spikes, traces by hand
    trace_q = trace_p = 0.0
    w = 1.0
    for t in range(steps):
        s_p, s_q = raster[t, lay.P], raster[t, lay.Q]
        w = w + eta[t] * trace_q * s_p - a[t] * trace_p * s_q
        w = min(max(w, -W_MAX), W_MAX)
        trace_p, trace_q = D * (0.1 * s_p + trace_p), D * (0.1 * s_q + trace_q)
    assert res.weights[0, lay.P, lay.Q] == pytest.approx(w, abs=run.atol)
    assert res.weights[0, lay.P, lay.Q] != 1.0


# ----------------------------------------------------------------------------------------------
# AP-STDP windows at and around their open boundaries
# ----------------------------------------------------------------------------------------------

EPS = 2.0 ** -10


@IMPLS
@pytest.mark.parametrize("pre,theta,rho,changes", [
    # excitatory causal pair: the positive term, gated by LTP (theta, theta + rho); P's calcium = 1
    ("exc", 0.75, 0.5, True),
    ("exc", 1.0, 0.5, False),               # C = theta: neither window
    ("exc", 1.0 - EPS, 0.5, True),
    ("exc", 0.5, 0.5, False),               # C = theta + rho
    ("exc", 0.5, 0.5 + EPS, True),
    # inhibitory causal pair: the negative term, gated by LTD (theta - rho, theta)
    ("inh", 1.25, 0.5, True),
    ("inh", 1.0, 0.5, False),               # C = theta
    ("inh", 1.0 + EPS, 0.5, True),
    ("inh", 1.5, 0.5, False),               # C = theta - rho
    ("inh", 1.5, 0.5 + EPS, True),
], ids=lambda v: str(v))
def test_apstdp_windows_are_open_intervals(run, pre, theta, rho, changes):
    w = 1.0 if pre == "exc" else -1.0
    net, lay = pair_net(pre, w)
    params = {"rate_threshold": theta, "rate_range": rho}
    res = check_pair_rows(run, net, lay, "apstdp", params, [(5, 2)], pre, w)
    got = res.weights[0, lay.P, lay.Q]
    if changes:
        assert got == pytest.approx(w + (1 if pre == "exc" else -1) * ETA0 * 0.1 * D ** 3, abs=run.atol)
    else:
        assert got == w


# ----------------------------------------------------------------------------------------------
# (b) the init phase: one stream of snapshots
# ----------------------------------------------------------------------------------------------

@IMPLS
def test_init_phase_carries_weights_and_trace_without_decay(run):
    """stdp, two snapshots of 8 steps.  Snapshot 0: Q at 2, P at 5 (causal, +eta0 0.1 d^3).
    Snapshot 1: P at 2 alone; Q's trace is carried: 0.1 d^(6 + 2) = 0.1 d^8 -> +eta0 0.1 d^8.
    The drivers of P fire at step 1 of snapshot 1 after P's spike of snapshot 0 (anti-causal,
    -eta0 0.1 d^4) and are lifted back to 3 at step 2 by their own trace (+eta0 (0.1 d + 0.1 d^6))."""
    w = 1.0
    net, lay = pair_net("exc", w)
    x0, r0 = pair_events(net, lay, T_PAIR, t_p=5, t_q=2)
    x1, r1 = pair_events(net, lay, T_PAIR, t_p=2)
    res = run(net, np.stack([x0, x1]), "stdp", phase="init")
    np.testing.assert_array_equal(res.spikes, np.stack([r0, r1]))
    assert res.weights.shape == (1, net.n_neurons, net.n_neurons)
    expected = np.asarray(net.W, np.float64).copy()
    expected[lay.P, lay.Q] = w + ETA0 * 0.1 * D ** 3 + ETA0 * 0.1 * D ** 8
    np.testing.assert_allclose(res.weights[0], expected, rtol=0, atol=run.atol)
    # the same snapshots as independent samples: no carried trace, decays on
    alone = run(net, np.stack([x0, x1]), "stdp", phase="sample")
    np.testing.assert_allclose(alone.weights[:, lay.P, lay.Q], [w + ETA0 * DECAY ** 5 * 0.1 * D ** 3, w],
                               rtol=0, atol=run.atol)


@IMPLS
def test_init_phase_drivers_depressed_by_a_carried_trace(run):
    """Snapshot 0: P at 2.  Snapshot 1: P's drivers spike at the last step (7), before P can respond: they
    see P's carried trace 0.1 d^(6 + 7) (anti-causal, input pre: -eta0 0.1 d^13) and stay depressed."""
    net, lay = pair_net("exc", 1.0)
    x0, r0 = pair_events(net, lay, T_PAIR, t_p=2)
    x1 = np.zeros_like(x0)
    x1[6, [j - lay.n_res for j in lay.p_drivers]] = 1           # drivers spike at 7 (last step)
    res = run(net, np.stack([x0, x1]), "stdp", phase="init")
    assert res.spikes[1, 7, lay.p_drivers].all() and not res.spikes[1, :, lay.P].any()
    # P's trace at step 7 of snapshot 1: spike at step 2 of snapshot 0 -> 0.1 d^(6 + 7)
    expected = 3.0 - ETA0 * 0.1 * D ** 13
    np.testing.assert_allclose(res.weights[0, lay.P, lay.p_drivers], expected, rtol=0, atol=run.atol)


@IMPLS
def test_init_phase_resets_membrane_and_refractory_state(run):
    """Snapshot 0: P's drivers spike at the last step, P's V = 27 at the end -> no spike at step 0 of
    snapshot 1 (V reset).  Snapshot 1: P spikes at the last step (t_refrac 5 for P).  Snapshot 2: P spikes
    at step 2 (R reset; a carried R = 5 would block it)."""
    steps = 6
    net, lay = pair_net("exc", 1.0, t_refrac_p=5.0)
    x0 = np.zeros((steps, net.n_input), np.uint8)
    x0[4, [j - lay.n_res for j in lay.p_drivers]] = 1
    x1, r1 = pair_events(net, lay, steps, t_p=5)
    x2, r2 = pair_events(net, lay, steps, t_p=2)
    res = run(net, np.stack([x0, x1, x2]), "stdp", phase="init")
    assert not res.spikes[0, :, lay.P].any()
    assert list(np.nonzero(res.spikes[1, :, lay.P])[0]) == [5]
    assert list(np.nonzero(res.spikes[2, :, lay.P])[0]) == [2]
    ref = run_reference(net, np.stack([x0, x1, x2]), "stdp", phase="init")
    np.testing.assert_array_equal(res.spikes, ref.spikes)
    np.testing.assert_allclose(res.weights, ref.weights, rtol=0, atol=run.atol)


@IMPLS
def test_init_phase_resets_the_astrocyte_per_snapshot_without_decay(run):
    w = 1.0
    net, lay = pair_net("exc", w)
    params = {"astro_w": 0.05}
    x0, r0 = pair_events(net, lay, T_PAIR, t_p=2, t_q=5)     # anti-causal: -A at step 5
    x1, r1 = pair_events(net, lay, T_PAIR, t_p=2, t_q=5)
    res = run(net, np.stack([x0, x1]), "nalsm", phase="init", params=params)
    np.testing.assert_array_equal(res.spikes, np.stack([r0, r1]))
    eta, a, after = scalar_rates("nalsm", "init", r0, lay.n_res, params)
    assert (eta == ETA0).all()
    np.testing.assert_allclose(res.astro, np.stack([after, after]), rtol=1e-6)   # A restarts at eta0
    # snapshot 0, step 5: -A_5 x_P = -A_5 0.1 d^3.  Snapshot 1, step 2: P pairs with Q's carried trace
    # (Q at step 5 of snapshot 0): +eta0 0.1 d^5; step 5: -A_5 x_P with P's trace 0.1 d^3 + 0.1 d^11
    # (its spike at 2 of this snapshot plus the carried one of snapshot 0)
    expected = w - a[5] * 0.1 * D ** 3 + ETA0 * 0.1 * D ** 5 - a[5] * 0.1 * (D ** 3 + D ** 11)
    assert res.weights[0, lay.P, lay.Q] == pytest.approx(expected, abs=run.atol)


@IMPLS
def test_init_phase_carries_calcium(run):
    """AP-STDP, theta 1.5, rho 1: snapshot 0: P alone at 2.  Snapshot 1: Q at 2, P at 5.
    Step 2 of snapshot 1: Q meets P's carried trace 0.1 d^8 while P's carried calcium CAL^8 ~ 0.99 is in
    LTD (0.5, 1.5): -eta0 0.1 d^8.  Step 5: P's calcium is CAL^11 + 1 ~ 1.99 -> LTP open -> +eta0 0.1 d^3
    (with a calcium restarted at 0 both windows would stay closed for this synapse)."""
    w = 1.0
    net, lay = pair_net("exc", w)
    params = {"rate_threshold": 1.5, "rate_range": 1.0}
    x0, r0 = pair_events(net, lay, T_PAIR, t_p=2)
    x1, r1 = pair_events(net, lay, T_PAIR, t_p=5, t_q=2)
    res = run(net, np.stack([x0, x1]), "apstdp", phase="init", params=params)
    np.testing.assert_array_equal(res.spikes, np.stack([r0, r1]))
    expected = w - ETA0 * 0.1 * D ** 8 + ETA0 * 0.1 * D ** 3
    assert res.weights[0, lay.P, lay.Q] == pytest.approx(expected, abs=run.atol)
    # P's drivers: -eta0 x_P at step 4 of snapshot 1 (P's calcium CAL^10 in LTD), then lifted back to 3
    np.testing.assert_allclose(res.weights[0, lay.P, lay.p_drivers], 3.0, rtol=0, atol=run.atol)
    assert res.calcium.shape == (1, net.n_neurons)
    np.testing.assert_allclose(res.calcium[0], calcium_from_raster(np.concatenate([r0, r1])), rtol=1e-6)
    # the same as independent samples: the calcium restarts, the window stays closed
    alone = run(net, np.stack([x0, x1]), "apstdp", phase="sample", params=params)
    assert alone.weights[1, lay.P, lay.Q] == w
    np.testing.assert_allclose(alone.calcium[1], calcium_from_raster(r1), rtol=1e-6)


# ----------------------------------------------------------------------------------------------
# Random small liquids: (c) per-row independence, (d) simulate against the reference
# ----------------------------------------------------------------------------------------------

RANDOM_CASES = {
    "stdp": {},
    "nalsm": {"astro_w": 0.015},
    "apstdp": {"rate_threshold": 1.5, "rate_range": 1.0},    # LTP (1.5, 2.5), LTD (0.5, 1.5)
}


@pytest.fixture(scope="module")
def liquid():
    return Network.generate(dims=(3, 3, 3), n_input=30, seed=3)


def random_inputs(net, batch, steps, seed, rate=0.1):
    return (np.random.default_rng(seed).random((batch, steps, net.n_input)) < rate).astype(np.uint8)


@pytest.mark.parametrize("rule", list(RANDOM_CASES))
@pytest.mark.parametrize("phase", ["sample", "init"])
def test_random_liquid_matches_reference(liquid, sim, rule, phase):
    net = liquid
    inputs = random_inputs(net, 3, 80 if phase == "sample" else 50, seed=len(rule) + len(phase), rate=0.15)
    params = RANDOM_CASES[rule]
    ref = run_reference(net, inputs, rule, phase, weight_scale=3.0, params=params)
    got = sim(net, inputs, rule, phase, weight_scale=3.0, params=params)
    assert ref.spikes[:, :, : net.n_res].sum() > 100                          # an active liquid
    initial = 3.0 * np.asarray(net.W, np.float64)
    assert np.abs(ref.weights - initial[None]).max() > 1e-3                    # plasticity acted
    np.testing.assert_array_equal(got.spikes, ref.spikes)
    np.testing.assert_array_equal(got.counts, ref.counts)
    assert got.weights.shape == ref.weights.shape == ((3 if phase == "sample" else 1),) + initial.shape
    np.testing.assert_allclose(got.weights, ref.weights, rtol=0, atol=1e-5)
    if rule == "nalsm":
        assert got.astro.shape == ref.astro.shape == inputs.shape[:2]
        np.testing.assert_allclose(got.astro, ref.astro, rtol=1e-5)
        assert np.ptp(ref.astro) > 1e-3
    else:
        assert got.astro is None
    if rule == "apstdp":
        assert got.calcium.shape == ref.calcium.shape
        np.testing.assert_allclose(got.calcium, ref.calcium, rtol=0, atol=1e-4)
    else:
        assert got.calcium is None


def test_astrocyte_fed_by_a_fraction_of_the_neurons_matches_reference(liquid, sim):
    """params["astro_mask"]: the astrocyte's drive is sum(mask * S) over the neurons that feed it (the
    paper's neuron-astrocyte density ablation)."""
    net = liquid
    rng = np.random.default_rng(5)
    mask = np.concatenate([np.where(rng.random(net.n_res) < 0.5, 1.0, 0.0),
                           np.where(rng.random(net.n_input) < 0.5, -1.0, 0.0)]).astype(np.float32)
    params = {"astro_w": 0.015, "astro_mask": mask}
    inputs = random_inputs(net, 2, 80, seed=8, rate=0.15)
    ref = run_reference(net, inputs, "nalsm", "sample", weight_scale=3.0, params=params)
    got = sim(net, inputs, "nalsm", "sample", weight_scale=3.0, params=params)
    full = run_reference(net, inputs, "nalsm", "sample", weight_scale=3.0, params={"astro_w": 0.015})
    assert np.abs(ref.astro - full.astro).max() > 1e-3                        # the mask matters
    np.testing.assert_array_equal(got.spikes, ref.spikes)
    np.testing.assert_allclose(got.astro, ref.astro, rtol=1e-5)
    np.testing.assert_allclose(got.weights, ref.weights, rtol=0, atol=1e-5)
    default = sim(net, inputs, "nalsm", "sample", weight_scale=3.0, params={
        "astro_w": 0.015, "astro_mask": np.concatenate([np.ones(net.n_res), -np.ones(net.n_input)])})
    np.testing.assert_array_equal(default.astro, sim(net, inputs, "nalsm", "sample", weight_scale=3.0,
                                                     params={"astro_w": 0.015}).astro)
    for bad in (mask[:-1], -mask, np.full(net.n_neurons, 0.5)):
        with pytest.raises(ValueError, match="astro_mask"):
            sim(net, inputs, "nalsm", "sample", weight_scale=3.0, params={"astro_w": 0.015, "astro_mask": bad})


OVERRIDES = {
    "stdp": {"lr": 0.1, "lr_decay": 0.995, "w_max": 4.0, "input_current": 60.0},
    "nalsm": {"astro_w": 0.03, "lr": 0.2, "lr_decay": 0.98, "astro_tau": 40.0, "astro_bias_offset": 0.3,
              "w_max": 3.5},
    "apstdp": {"rate_threshold": 0.8, "rate_range": 0.5, "calcium_tau": 25.0, "lr": 0.3,
               "input_current": 80.0},
}


@pytest.mark.parametrize("rule", list(OVERRIDES))
def test_random_liquid_with_overridden_constants_matches_reference(liquid, sim, rule):
    net = liquid
    inputs = random_inputs(net, 2, 60, seed=21, rate=0.15)
    params = OVERRIDES[rule]
    ref = run_reference(net, inputs, rule, "sample", weight_scale=3.0, params=params)
    got = sim(net, inputs, rule, "sample", weight_scale=3.0, params=params)
    assert ref.spikes[:, :, : net.n_res].sum() > 50
    assert np.abs(ref.weights - 3.0 * np.asarray(net.W, np.float64)[None]).max() > 1e-3
    np.testing.assert_array_equal(got.spikes, ref.spikes)
    np.testing.assert_allclose(got.weights, ref.weights, rtol=0, atol=1e-5)
    if rule == "nalsm":
        np.testing.assert_allclose(got.astro, ref.astro, rtol=1e-5)
    if rule == "apstdp":
        np.testing.assert_allclose(got.calcium, ref.calcium, rtol=0, atol=1e-4)


def test_random_liquid_static_rule_matches_reference(liquid, sim):
    net = liquid
    inputs = random_inputs(net, 2, 60, seed=5)
    for phase in ("sample", "init"):
        ref = run_reference(net, inputs, "static", phase, weight_scale=4.0)
        got = sim(net, inputs, "static", phase, weight_scale=4.0)
        assert ref.spikes[:, :, : net.n_res].sum() > 50
        np.testing.assert_array_equal(got.spikes, ref.spikes)
        np.testing.assert_allclose(got.weights, ref.weights, rtol=0, atol=1e-6)


@pytest.mark.parametrize("rule", list(RANDOM_CASES))
def test_row_of_a_plastic_batch_equals_the_sample_run_alone(liquid, sim, rule):
    net = liquid
    inputs = random_inputs(net, 3, 60, seed=11)
    params = RANDOM_CASES[rule]
    batch = sim(net, inputs, rule, weight_scale=3.0, params=params)
    assert batch.spikes[:, :, : net.n_res].sum() > 50
    for k in (2,):
        alone = sim(net, inputs[k:k + 1], rule, weight_scale=3.0, params=params)
        np.testing.assert_array_equal(batch.spikes[k], alone.spikes[0])
        np.testing.assert_allclose(batch.weights[k], alone.weights[0], rtol=0, atol=1e-6)
        if rule == "nalsm":
            np.testing.assert_allclose(batch.astro[k], alone.astro[0], rtol=1e-6)
        if rule == "apstdp":
            np.testing.assert_allclose(batch.calcium[k], alone.calcium[0], rtol=1e-6)
    # rows really differ (different inputs), so the check is not vacuous
    assert not np.array_equal(batch.weights[0], batch.weights[2])


def test_reference_trace_decays_by_one_over_e_in_ten_steps():
    """The oracle's own constant, derived from the trace time constant (10 ms), not copied from the package."""
    from tests.model import plasticity_reference
    assert math.isclose(plasticity_reference.TRACE_DECAY ** 10, math.exp(-1), rel_tol=1e-3)
