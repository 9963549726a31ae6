"""The linear readout (docs/model.md#the-readout): features, loss, Adadelta, training, resume, history
files."""
import math

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from lsm_core.analysis.readout import (  # noqa: E402
    ReadoutState,
    adadelta_update,
    batch_loss_and_grads,
    best_epoch,
    normalise_counts,
    soft_targets,
    train_readout,
)
from lsm_core.config import N_CLASSES, PAPER  # noqa: E402
from lsm_core.errors import UserError  # noqa: E402
from lsm_core.runs.folder import HISTORY_COLUMNS  # noqa: E402

RC = PAPER.readout


def _blobs(n, n_features=40, seed=0, noise=1.0):
    """Spike-count-like data: class c fires mostly in its own block of features."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, N_CLASSES, n)
    block = n_features // N_CLASSES
    rates = np.full((n, n_features), noise)
    for c in range(N_CLASSES):
        rates[labels == c, c * block:(c + 1) * block] += 6.0
    return rng.poisson(rates).astype(np.float32), labels


# ----------------------------------------------------------------------------------------------
# normalise_counts
# ----------------------------------------------------------------------------------------------

def test_normalise_counts_hand_computed():
    counts = np.array([[1, 3, 0],      # L1 4 -> .25 .75 0
                       [2, 2, 4],      # L1 8 -> .25 .25 .5      batch 1 max .75
                       [0, 0, 0],      # no spikes -> stays zero
                       [5, 0, 0],      # L1 5 -> 1 0 0           batch 2 max 1
                       [0, 0, 0],
                       [0, 0, 0]],     # an all-zero batch stays zero
                      dtype=np.int64)
    x = normalise_counts(counts, batch_size=2)
    expected = np.array([[1 / 3, 1, 0], [1 / 3, 1 / 3, 2 / 3], [0, 0, 0], [1, 0, 0], [0, 0, 0], [0, 0, 0]])
    assert x.dtype == np.float32 and x.shape == (6, 3)
    assert np.all(np.isfinite(x))
    np.testing.assert_allclose(x, expected, rtol=1e-7)


def test_normalise_counts_short_last_batch_and_float64_path():
    counts = np.array([[1, 1], [1, 3], [2, 0]], dtype=np.float32)
    x = normalise_counts(counts, batch_size=2)
    np.testing.assert_allclose(x, [[2 / 3, 2 / 3], [1 / 3, 1], [1, 0]], rtol=1e-7)
    # float64 then float32: identical to the float64 result rounded once
    rng = np.random.default_rng(3)
    c = rng.poisson(3.0, size=(20, 7))
    ref = c / c.sum(axis=1, keepdims=True)
    ref = np.concatenate([b / b.max() for b in np.split(ref, 4)]).astype(np.float32)
    np.testing.assert_array_equal(normalise_counts(c, 5), ref)


# ----------------------------------------------------------------------------------------------
# Loss and Adadelta
# ----------------------------------------------------------------------------------------------

def test_soft_targets_closed_form():
    p = soft_targets([3, 0])
    e = math.e
    hi, lo = e / (e + 9 / e), (1 / e) / (e + 9 / e)
    assert p.shape == (2, N_CLASSES)
    np.testing.assert_allclose(p[0], [lo] * 3 + [hi] + [lo] * 6, rtol=1e-6)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6)


def test_loss_at_zero_init_is_log10_and_grads_match_autodiff():
    x, y = _blobs(16, seed=1)
    x = normalise_counts(x, 16)
    targets = tf.constant(soft_targets(y))
    w, b = tf.zeros([x.shape[1], N_CLASSES]), tf.zeros([N_CLASSES])
    loss, _, _ = batch_loss_and_grads(tf.constant(x), targets, w, b, RC.l2)
    # uniform logits: CE = -sum_k p_k log(1/10) = log 10 whatever the soft target; the L2 term is 0
    assert float(loss) == pytest.approx(math.log(10.0), rel=1e-6)

    rng = np.random.default_rng(2)
    w = tf.constant(rng.normal(size=(x.shape[1], N_CLASSES)).astype(np.float32))
    b = tf.constant(rng.normal(size=N_CLASSES).astype(np.float32))
    loss, g_w, g_b = batch_loss_and_grads(tf.constant(x), targets, w, b, 1e-2)
    with tf.GradientTape() as tape:
        tape.watch([w, b])
        logits = tf.matmul(x, w) + b
        ref = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=targets, logits=logits)) \
            + 1e-2 * 0.5 * tf.reduce_sum(w * w)
    r_w, r_b = tape.gradient(ref, [w, b])
    assert float(loss) == pytest.approx(float(ref), rel=1e-6)
    np.testing.assert_allclose(g_w.numpy(), r_w.numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(g_b.numpy(), r_b.numpy(), rtol=1e-5, atol=1e-7)


def test_the_compiled_gradient_product_keeps_its_orientation():
    """dL/dW is computed as g^T x [10, N_res] (a skinny g: the faster product on CPUs) and then transposed;
    XLA would fold the transpose into the product (x^T g [N_res, 10]) without the barrier."""
    import re

    from lsm_core.analysis.readout import _build_training_fn

    n_features, batch = 12, 5
    train_epochs = _build_training_fn(1, batch, RC, True)
    with tf.device("/CPU:0"):            # the CPU's program (a GPU's calls its products as library kernels)
        w, b = tf.zeros([n_features, N_CLASSES]), tf.zeros([N_CLASSES])
        hlo = train_epochs.experimental_get_compiler_ir(
            n_epochs=tf.constant(1), x_train=tf.zeros([2 * batch, n_features]),
            y_train=tf.zeros([2 * batch], tf.int32), weights=w, bias=b, acc_gw=w, acc_uw=w, acc_gb=b,
            acc_ub=b)(stage="optimized_hlo")
    products = sorted(re.findall(r"= f32\[([0-9,]+)\]\{[0-9,]+\} dot\(", hlo))
    assert products == [f"{N_CLASSES},{n_features}", f"{batch},{N_CLASSES}"]   # gradient; logits


def test_first_adadelta_step_by_hand():
    """One batch, one epoch from zero: the gradient and the Adadelta step computed in NumPy."""
    counts, y = _blobs(20, seed=4)
    x = normalise_counts(counts, 20).astype(np.float64)
    state, rows = train_readout((x.astype(np.float32), y), (x.astype(np.float32), y), None,
                                batch_size=20, epochs=1)
    # gradient at zero weights: softmax(0) = 0.1 everywhere
    g_logits = (0.1 - soft_targets(y).astype(np.float64)) / 20
    g_w, g_b = x.T @ g_logits, g_logits.sum(axis=0)
    rho, eps, lr = RC.rho, RC.epsilon, RC.learning_rate

    def step(g):
        acc_g = (1 - rho) * g * g
        upd = np.sqrt(0 + eps) / np.sqrt(acc_g + eps) * g
        return -lr * upd, acc_g, (1 - rho) * upd * upd

    # |g| >> sqrt(eps): the first step is lr * sqrt(eps / (1 - rho)) = 4.47e-5 against the gradient's sign
    # (atol covers float32 cancellation in gradients that are nearly zero)
    for got, (var, acc_g, acc_u) in ((state.weights, step(g_w)), (state.bias, step(g_b))):
        np.testing.assert_allclose(got, var, rtol=2e-5, atol=1e-9)
        assert np.abs(var).max() == pytest.approx(lr * math.sqrt(eps / (1 - rho)), rel=1e-3)
    np.testing.assert_allclose(state.accum_grad_w, step(g_w)[1], rtol=2e-5, atol=1e-16)
    np.testing.assert_allclose(state.accum_update_b, step(g_b)[2], rtol=2e-5, atol=1e-16)
    assert rows[0]["train_loss"] == pytest.approx(math.log(10.0), rel=1e-6)   # loss before the update
    assert state.epoch == 1 and math.isnan(rows[0]["test_acc"])


def test_adadelta_matches_keras():
    counts, y = _blobs(60, seed=5)
    x = normalise_counts(counts, 20)
    epochs = 3
    state, _ = train_readout((x, y), (x, y), None, batch_size=20, epochs=epochs, chunk_epochs=2)

    w = tf.Variable(tf.zeros([x.shape[1], N_CLASSES]))
    b = tf.Variable(tf.zeros([N_CLASSES]))
    opt = tf.keras.optimizers.Adadelta(learning_rate=RC.learning_rate, rho=RC.rho, epsilon=RC.epsilon)
    targets = soft_targets(y)
    for _ in range(epochs):
        for k in range(3):
            xb, tb = x[k * 20:(k + 1) * 20], targets[k * 20:(k + 1) * 20]
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(
                    labels=tb, logits=tf.matmul(xb, w) + b)) + RC.l2 * tf.nn.l2_loss(w)
            opt.apply_gradients(zip(tape.gradient(loss, [w, b]), [w, b]))
    scale = np.abs(w.numpy()).max()
    np.testing.assert_allclose(state.weights, w.numpy(), rtol=1e-4, atol=1e-5 * scale)
    np.testing.assert_allclose(state.bias, b.numpy(), rtol=1e-4, atol=1e-5 * np.abs(b.numpy()).max())


def test_adadelta_update_function_matches_formula():
    g = tf.constant([0.5, -2.0, 1e-6])
    ag, au = tf.constant([0.1, 0.2, 0.0]), tf.constant([0.01, 0.0, 1e-3])
    var, ag2, au2 = adadelta_update(tf.constant([1.0, 1.0, 1.0]), ag, au, g, 0.1, 0.95, 1e-8)
    g, ag, au = g.numpy().astype(np.float64), ag.numpy(), au.numpy()
    ag_ref = 0.95 * ag + 0.05 * g * g
    upd = np.sqrt(au + 1e-8) / np.sqrt(ag_ref + 1e-8) * g
    np.testing.assert_allclose(ag2.numpy(), ag_ref, rtol=1e-6)
    np.testing.assert_allclose(au2.numpy(), 0.95 * au + 0.05 * upd * upd, rtol=1e-5)
    np.testing.assert_allclose(var.numpy(), 1.0 - 0.1 * upd, rtol=1e-6)


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------

def _splits(n_features=40, batch=25, noise=0.2):
    data = {}
    for name, n, seed in (("train", 500, 10), ("valid", 200, 11), ("test", 200, 12)):
        counts, y = _blobs(n, n_features, seed=seed, noise=noise)
        data[name] = (normalise_counts(counts, batch), y)
    return data


def test_separable_problem_is_learned():
    d = _splits()
    seen = []
    state, history = train_readout(d["train"], d["valid"], d["test"], batch_size=25, epochs=8,
                                   chunk_epochs=3, on_epochs=lambda s, rows: seen.append((s.epoch, len(rows))))
    assert seen == [(3, 3), (6, 3), (8, 2)]
    assert [row["epoch"] for row in history] == list(range(1, 9))
    assert set(history[0]) == set(HISTORY_COLUMNS)
    last = history[-1]
    assert last["train_acc"] > 0.95 and last["valid_acc"] > 0.95 and last["test_acc"] > 0.95
    assert history[-1]["train_loss"] < history[0]["train_loss"] < math.log(10.0) + 1e-6
    assert last["valid_loss"] < math.log(10.0)
    # the reported accuracies are those of the weights at the end of the epoch
    x, y = d["test"]
    pred = np.argmax(x @ state.weights + state.bias, axis=1)
    assert np.mean(pred == y) == last["test_acc"]
    # the best state is the first epoch of the highest validation accuracy
    best = best_epoch(history)
    assert state.best_epoch == best["epoch"] and state.best_valid_acc == best["valid_acc"]


def test_resume_equals_uninterrupted(tmp_path):
    d = _splits(n_features=30, batch=50, noise=1.5)    # noisy: the validation accuracy moves and ties
    args = (d["train"], d["valid"], d["test"])
    full_state, full_hist = train_readout(*args, batch_size=50, epochs=6, chunk_epochs=4)
    half_state, hist_a = train_readout(*args, batch_size=50, epochs=3, chunk_epochs=3)
    half_state.save(tmp_path / "state.npz")
    loaded = ReadoutState.load(tmp_path / "state.npz")
    assert loaded.epoch == 3
    end_state, hist_b = train_readout(*args, batch_size=50, epochs=6, state=loaded, chunk_epochs=2)
    assert hist_a + hist_b == full_hist
    for name in ReadoutState._fields:
        np.testing.assert_array_equal(np.asarray(getattr(end_state, name)),
                                      np.asarray(getattr(full_state, name)), err_msg=name)
    # nothing left to do: the state comes back unchanged with no rows
    same, rows = train_readout(*args, batch_size=50, epochs=6, state=end_state)
    assert rows == [] and same is end_state
    # the best weights are the weights after the (first) best epoch
    e = full_state.best_epoch
    assert e == best_epoch(full_hist)["epoch"]
    at_best, _ = train_readout(*args, batch_size=50, epochs=e)
    np.testing.assert_array_equal(at_best.weights, full_state.best_weights)
    np.testing.assert_array_equal(at_best.bias, full_state.best_bias)


def test_bad_sizes_are_refused():
    x, y = _blobs(30)
    with pytest.raises(UserError, match="divide"):
        train_readout((x, y), (x, y), None, batch_size=20, epochs=1)
    with pytest.raises(UserError, match="validation"):
        train_readout((x, y), (x[:0], y[:0]), None, batch_size=10, epochs=1)
    with pytest.raises(UserError, match="inputs"):
        train_readout((x, y), (x, y), None, batch_size=10, epochs=1, state=ReadoutState.zeros(7))


def test_state_zeros_and_broken_file(tmp_path):
    s = ReadoutState.zeros(5)
    assert s.weights.shape == (5, N_CLASSES) and s.epoch == 0 and s.best_epoch == 0
    assert s.best_valid_acc < 0
    (tmp_path / "bad.npz").write_bytes(b"not an npz")
    with pytest.raises(UserError):
        ReadoutState.load(tmp_path / "bad.npz")
    with pytest.raises(UserError):
        ReadoutState.load(tmp_path / "missing.npz")


# ----------------------------------------------------------------------------------------------
# History
# ----------------------------------------------------------------------------------------------

def test_best_epoch_first_of_ties():
    rows = [{"epoch": e, "valid_acc": v, "test_acc": 0.1 * e}
            for e, v in ((1, 0.5), (2, 0.7), (3, 0.7), (4, 0.6), (5, float("nan")))]
    assert best_epoch(rows)["epoch"] == 2
    assert best_epoch([]) is None


def test_numbers_do_not_depend_on_the_chunks():
    """Chunks train on this thread while the previous chunk is evaluated on a helper thread: one epoch
    per chunk, uneven chunks and one chunk for everything give the same history and state."""
    d = _splits(n_features=30, batch=50, noise=1.5)
    args = (d["train"], d["valid"], d["test"])
    runs = [train_readout(*args, batch_size=50, epochs=7, chunk_epochs=c) for c in (1, 3, 7)]
    (ref_state, ref_hist), others = runs[0], runs[1:]
    assert [row["epoch"] for row in ref_hist] == list(range(1, 8))
    for state, hist in others:
        assert hist == ref_hist
        for name in ReadoutState._fields:
            np.testing.assert_array_equal(np.asarray(getattr(state, name)), np.asarray(getattr(ref_state, name)),
                                          err_msg=name)
    # the best accuracy is exactly the one in its history row
    assert ref_state.best_valid_acc == best_epoch(ref_hist)["valid_acc"]


def test_an_error_in_on_epochs_stops_training_and_leaves_no_helper_thread():
    import threading

    d = _splits(n_features=20, batch=25)
    calls = []

    def fail(state, rows):
        calls.append(state.epoch)
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        train_readout(d["train"], d["valid"], d["test"], batch_size=25, epochs=9, chunk_epochs=3, on_epochs=fail)
    assert calls == [3]
    assert not [t for t in threading.enumerate() if t.name.startswith("readout-evaluation")]


def test_a_saved_best_accuracy_off_in_its_last_bit_chooses_the_same_best_epoch():
    """Older versions saved the best validation accuracy as count * (1 / n), which can differ from
    count / n in the last bit; an epoch with the same count must still not count as better."""
    d = _splits(n_features=30, batch=50, noise=1.5)
    args = (d["train"], d["valid"], d["test"])
    _, full_hist = train_readout(*args, batch_size=50, epochs=8)
    accs = [row["valid_acc"] for row in full_hist]
    assert any(accs[k] == max(accs[:k]) for k in range(1, 8))      # a later epoch ties the best so far
    for nudge in (-1.0, 2.0):
        for stop in range(1, 8):
            half, _ = train_readout(*args, batch_size=50, epochs=stop)
            off = half._replace(best_valid_acc=float(np.nextafter(half.best_valid_acc, nudge)))
            end, _ = train_readout(*args, batch_size=50, epochs=stop + 1, state=off)
            assert end.best_epoch == best_epoch(full_hist[:stop + 1])["epoch"], (nudge, stop)


def test_features_computed_batch_by_batch_equal_the_whole_array_formula_bit_for_bit():
    """normalise_counts works one batch at a time (the whole training set in float64 would be 3.2 GB at 8000
    neurons): the same float32 bits as the formula on the whole array in float64."""
    rng = np.random.default_rng(3)
    counts = rng.poisson(rng.uniform(0, 3, (403, 1)), (403, 257)).astype(np.int32)
    counts[::17] = 0                                   # rows without spikes
    counts[100:150] = 0                                # a batch without spikes
    x = counts.astype(np.float64)
    norm = np.abs(x).sum(axis=1, keepdims=True)
    x = np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)
    expected = np.concatenate([b / b.max() if b.max() > 0 else b for b in np.split(x, range(50, 403, 50))])
    np.testing.assert_array_equal(normalise_counts(counts, 50).view(np.uint32),
                                  expected.astype(np.float32).view(np.uint32))
