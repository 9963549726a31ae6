"""An independent plain-NumPy (float64) reference of the whole liquid model, plasticity included.

Written straight from docs/model.md#one-millisecond-step-by-step (one step), docs/model.md#plasticity
(plasticity rules), docs/model.md#the-astrocyte, docs/model.md#the-decays and
docs/model.md#the-init-phase, for checking `lsm_core.simulate` against it.  Event-mode inputs only
(0/1 array [B, T, n_input]).  Readability over speed: one Python loop over samples and steps, NumPy
over neurons, dense [N, N] weight matrices (rows postsynaptic i, columns presynaptic j).

    from plasticity_reference import reference_simulate
    out = reference_simulate(net, inputs, rule="nalsm", phase="sample", weight_scale=3.0,
                             params={"astro_w": 0.015})
    out["spikes"], out["counts"], out["weights"], out["astro"], out["calcium"]
"""
import numpy as np

TRACE_DECAY = 0.9047744744744745     # d (docs/model.md#the-trace-and-the-pair-terms)
TRACE_JUMP = 0.1                     # x_tr = d * (0.1 * S + x_tr)
SINCE_SPIKE_INIT = 20.0              # s at the start of every sample
SINCE_SPIKE_CAP = 100.0

DEFAULTS = {
    "lr": 0.15,                 # eta_0 (also the astrocyte's initial value)
    "lr_decay": 0.99,           # per-ms decay of the sample phase (NALSM, LSM+STDP)
    "w_max": 3.0,               # weight bound
    "input_current": 100.0,     # current into an input neuron per input spike
    "astro_w": None,            # w_A, required for "nalsm"
    "astro_tau": 100.0,         # tau_A
    "astro_bias_offset": 0.0,   # b_A = eta_0 * (1 + offset)
    "rate_threshold": None,     # theta, required for "apstdp"
    "rate_range": None,         # rho, required for "apstdp"
    "calcium_tau": 1000.0,      # tau_C
    "astro_mask": None,         # [N]: +1 reservoir / -1 input neurons that feed the astrocyte, 0 others; None: all
}

RULES = ("static", "stdp", "nalsm", "apstdp")
PHASES = ("sample", "init")


def initial_weights(net, weight_scale=None):
    """Dense float64 [N, N] starting weights: the network's, or sign * weight_scale on every synapse."""
    mask = np.asarray(net.mask, bool)
    W = np.asarray(net.W, np.float64) * mask
    if weight_scale is not None:
        W = np.sign(W) * float(weight_scale)
    return W


def class_bounds(net, w_max):
    """Per presynaptic column j: (lower, upper) clip bounds of docs/model.md#weight-bounds, and whether j
    is inhibitory."""
    n = net.n_neurons
    j = np.arange(n)
    is_exc = j < net.n_exc
    is_inh = (j >= net.n_exc) & (j < net.n_res)
    lower = np.where(is_exc, 0.0, -w_max)          # exc [0, w_max]; inh and input [-w_max, ...]
    upper = np.where(is_inh, 0.0, w_max)           # inh [..., 0]; exc and input [..., w_max]
    return lower, upper, is_inh


def reference_simulate(net, inputs, rule="static", phase="sample", weight_scale=None, params=None):
    """Simulate event-mode `inputs` [B, T, n_input] and return a dict of NumPy arrays:

    spikes bool [B, T, N]; counts int [B, N_res]; weights float64 [B, N, N] ("sample") or [1, N, N]
    ("init"); astro float64 [B, T] (A after each step) for "nalsm", else None; calcium float64 [B, N]
    ("sample") or [1, N] ("init") for "apstdp", else None.
    """
    if rule not in RULES or phase not in PHASES:
        raise ValueError(f"bad rule/phase {rule!r}/{phase!r}")
    p = dict(DEFAULTS)
    for key, value in (params or {}).items():
        if key not in p:
            raise ValueError(f"unknown parameter {key!r}")
        p[key] = value
    inputs = np.asarray(inputs, np.float64)
    assert inputs.ndim == 3 and inputs.shape[2] == net.n_input, "event-mode inputs [B, T, n_input] only"
    B, T, _ = inputs.shape
    N, n_res = net.n_neurons, net.n_res

    tau_v = np.asarray(net.tau_v, np.float64)
    v_thresh = np.asarray(net.v_thresh, np.float64)
    bias = np.asarray(net.bias, np.float64)
    t_refrac = np.asarray(net.t_refrac, np.float64)
    tau_syn = np.asarray(net.tau_syn, np.float64)
    mask = np.asarray(net.mask, bool)
    W0 = initial_weights(net, weight_scale)
    lower, upper, pre_is_inh = class_bounds(net, float(p["w_max"]))
    plastic = rule != "static"
    decays = phase == "sample" and rule in ("stdp", "nalsm")
    eta0 = float(p["lr"])
    if rule == "nalsm" and p["astro_w"] is None:
        raise ValueError("rule 'nalsm' needs params['astro_w']")
    if rule == "apstdp" and (p["rate_threshold"] is None or p["rate_range"] is None):
        raise ValueError("rule 'apstdp' needs params['rate_threshold'] and params['rate_range']")

    n_res = net.n_res
    astro_mask = (np.concatenate([np.ones(n_res), -np.ones(N - n_res)]) if p["astro_mask"] is None
                  else np.asarray(p["astro_mask"], np.float64))
    spikes = np.zeros((B, T, N), bool)
    astro = np.zeros((B, T)) if rule == "nalsm" else None
    final_weights, final_calcium = [], []

    # state carried across the snapshots of the init phase (reset per row in the sample phase)
    W = W0.copy()
    trace = np.zeros(N)
    calcium = np.zeros(N)

    for b in range(B):
        if phase == "sample":                       # every row: an independent copy of the liquid
            W = W0.copy()
            trace = np.zeros(N)
            calcium = np.zeros(N)
        # start of every sample / snapshot
        V = np.zeros(N)
        R = np.zeros(N)
        s = np.full(N, SINCE_SPIKE_INIT)
        eta = eta0
        A = eta0
        w_A = float(p["astro_w"]) if rule == "nalsm" else 0.0
        b_A = eta0 * (1.0 + float(p["astro_bias_offset"]))

        for t in range(T):
            # 1. spike where the (non-refractory) membrane reaches threshold
            S = (V * (1.0 - np.clip(R, 0.0, 1.0)) >= v_thresh).astype(np.float64)
            # 2. reset and record
            V = V * (1.0 - S)
            spikes[b, t] = S > 0
            # 3. calcium (AP-STDP)
            if rule == "apstdp":
                calcium = calcium - calcium / float(p["calcium_tau"]) + S
            # 4. restart the synaptic kernel of the neurons that spiked
            s = np.where(S > 0, 0.0, s)
            # 5. integrate with the weights before this step's plasticity
            current = np.zeros(N)
            current[n_res:] = float(p["input_current"]) * inputs[b, t]
            kernel = np.exp(-s / tau_syn) / tau_syn
            V = V + W @ kernel + current + bias - V / tau_v
            # 6., 7.
            s = np.minimum(s + 1.0, SINCE_SPIKE_CAP)
            R = (R - 1.0) * (1.0 - S) + t_refrac * S
            # 8. plasticity with this step's S and the trace before its update
            if plastic:
                causal = np.outer(S, trace)        # D+[i, j] = x_tr[j] * S[i]
                anti = np.outer(trace, S)          # D-[i, j] = x_tr[i] * S[j]
                depress = A if rule == "nalsm" else eta
                # the positive term and the negative term of every synapse, by presynaptic class
                positive = np.where(pre_is_inh[None, :], eta * anti, eta * causal)
                negative = np.where(pre_is_inh[None, :], -depress * causal, -depress * anti)
                if rule == "apstdp":
                    theta, rho = float(p["rate_threshold"]), float(p["rate_range"])
                    ltp = (calcium > theta) & (calcium < theta + rho)      # per postsynaptic row i
                    ltd = (calcium > theta - rho) & (calcium < theta)
                    dW = positive * ltp[:, None] + negative * ltd[:, None]
                else:
                    dW = positive + negative
                W = W + dW * mask
                W = np.where(mask, np.clip(W, lower[None, :], upper[None, :]), 0.0)
            # 9. trace
            trace = TRACE_DECAY * (TRACE_JUMP * S + trace)
            # 10. astrocyte
            if rule == "nalsm":
                activity = float(astro_mask @ S)
                A = A + (w_A * activity + b_A - A) / float(p["astro_tau"])
            # 11. decays
            if decays:
                decay = float(p["lr_decay"])
                eta = max(eta * decay, 0.0)
                A, w_A, b_A = A * decay, w_A * decay, b_A * decay
            if astro is not None:
                astro[b, t] = A

        if phase == "sample":
            final_weights.append(W.copy())
            final_calcium.append(calcium.copy())

    if phase == "init":
        final_weights.append(W.copy())
        final_calcium.append(calcium.copy())

    return {
        "spikes": spikes,
        "counts": spikes[:, :, :n_res].sum(axis=1).astype(np.int64),
        "weights": np.stack(final_weights),
        "astro": astro,
        "calcium": np.stack(final_calcium) if rule == "apstdp" else None,
    }
