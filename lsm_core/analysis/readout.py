"""The linear readout (docs/model.md#the-readout): normalised spike counts -> 10 logits, trained with
Adadelta.

* `normalise_counts` turns raw reservoir spike counts into the readout's features: each count vector is
  divided by its L1 norm, then each batch (consecutive groups of `batch_size` rows, as the training loop
  and the evaluation see them) by its largest value.  Rows or batches without any spike stay zero.
* The model is ``logits = x W + b`` with W [N_res, 10] and b [10] starting at zero.  The loss of a batch is
  the mean softmax cross-entropy against the soft target softmax(t) (t = +1 at the label, -1 elsewhere)
  plus ``l2 * 1/2 * ||W||^2`` (the bias is not regularised).
* The optimiser is Adadelta (learning rate 0.1, rho 0.95, epsilon 1e-8) written out explicitly, so that its
  whole state lives in a `ReadoutState` that can be saved and resumed bit-exactly.
* `train_readout` runs whole chunks of epochs in compiled TensorFlow calls (`tf.function`, XLA by
  default): each epoch is one pass over the training batches in order, followed by the accuracies on the
  training, validation and test sets and the validation loss, all at the weights reached at the end of the
  epoch.  The best-validation weights (first epoch of the highest validation accuracy) are kept.  A chunk's
  evaluation needs only the weights at the end of each of its epochs, so it runs on a helper thread while
  the next chunk trains: the same operations on the same numbers, only overlapped in time.

History rows are plain dicts with the keys of `runfolder.HISTORY_COLUMNS`; accuracies are fractions in [0, 1];
`train_loss` is the mean over the epoch's batches of each batch's loss (L2 term included) before that
batch's update, `valid_loss` the mean loss over the validation samples (L2 term included) at the end of
the epoch.

Speed (2 cores of an AMD EPYC with AVX-512, N_res 1000, 50,000 training samples in batches of 250, 10,000
validation and 10,000 test samples; ``python -c "from lsm_core.analysis.readout import time_epochs;
print(time_epochs(epochs=20))"``): about 0.036-0.038 s per epoch once the first chunk is compiled (about 2 s);
the paper's 5000 epochs take about 3 minutes.  The training takes 0.037 s per epoch on one core (a second
one does not shorten it), the evaluation 0.015 s on two cores (0.026 s on one), hidden behind the next
chunk's training on the other core.  Most of the training is its two products per batch, x W and g^T x.
XLA used to fold the transpose of (g^T x)^T into the product, computing x^T g [N_res, 10] instead, which
took a quarter longer (0.050 s per epoch overall); an optimisation barrier now keeps the product as written
(`batch_loss_and_grads`).  Both orientations sum the same products, and for 1000 features in batches of
250 the numbers are identical; for some other shapes XLA's blocking of the sum over the batch differs
between them, by rounding (a few 1e-8 in a gradient).  On the earlier AVX2 EPYC, before that change:
0.08-0.10 s per epoch.
Forms that XLA runs faster still (a class dimension padded to 16, one product for all three sets in the
evaluation) round differently, so they are not used.
"""
from __future__ import annotations

import concurrent.futures
import functools
import math
import time
from typing import Callable, NamedTuple, Optional, Sequence

import numpy as np
import tensorflow as tf

from lsm_core.config import N_CLASSES, PAPER, ReadoutConstants
from lsm_core.errors import UserError
from lsm_core.storage import atomic_save_npz, load_npz

__all__ = [
    "ReadoutState", "normalise_counts", "soft_targets", "predict", "accuracy",
    "batch_loss_and_grads", "adadelta_update", "train_readout", "best_epoch", "time_epochs",
]



# ----------------------------------------------------------------------------------------------
# Features
# ----------------------------------------------------------------------------------------------

def normalise_counts(counts, batch_size: int) -> np.ndarray:
    """Readout features from spike counts [n, N_res] (docs/model.md#the-readout), float32 [n, N_res].

    Each row is divided by its L1 norm (a row without spikes stays all zero), then each batch of
    `batch_size` consecutive rows by its largest value (an all-zero batch stays zero).  A last batch that is
    shorter than `batch_size` is normalised on its own.  Computed in float64 one batch at a time (the whole
    training set in float64 would be 3.2 GB at 8000 neurons), returned as float32.
    """
    counts = np.asarray(counts)
    if counts.ndim != 2:
        raise ValueError(f"counts must be a 2-D array [n, N_res], got shape {counts.shape}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    batch_size = int(batch_size)
    out = np.empty(counts.shape, dtype=np.float32)
    for start in range(0, counts.shape[0], batch_size):
        x = np.asarray(counts[start:start + batch_size], dtype=np.float64)
        norm = np.abs(x).sum(axis=1, keepdims=True)
        block = np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)
        peak = block.max() if block.size else 0.0
        out[start:start + batch_size] = block / peak if peak > 0 else block
    return out


def soft_targets(labels) -> np.ndarray:
    """The soft targets softmax(t), t = +1 at the label and -1 elsewhere, float32 [n, 10]."""
    labels = np.asarray(labels, dtype=np.int64)
    t = np.full((labels.shape[0], N_CLASSES), -1.0)
    t[np.arange(labels.shape[0]), labels] = 1.0
    e = np.exp(t - t.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def predict(weights, bias, x) -> np.ndarray:
    """Predicted classes (argmax of x W + b; ties go to the lowest index), int64 [n]."""
    logits = np.asarray(x, np.float32) @ np.asarray(weights, np.float32) + np.asarray(bias, np.float32)
    return np.argmax(logits, axis=1)


def accuracy(weights, bias, x, labels) -> float:
    """Fraction of correctly classified rows (NaN for an empty set)."""
    labels = np.asarray(labels)
    if labels.shape[0] == 0:
        return float("nan")
    return float(np.mean(predict(weights, bias, x) == labels))


# ----------------------------------------------------------------------------------------------
# State
# ----------------------------------------------------------------------------------------------

class ReadoutState(NamedTuple):
    """Everything needed to continue training exactly where it stopped.

    `epoch` counts completed epochs.  `best_*` hold the weights after the first epoch that reached the
    highest validation accuracy so far (`best_epoch` 0 and `best_valid_acc` -1 before any epoch).
    """

    weights: np.ndarray         # float32 [N_res, 10]
    bias: np.ndarray            # float32 [10]
    accum_grad_w: np.ndarray    # Adadelta running mean of squared gradients, like weights
    accum_update_w: np.ndarray  # Adadelta running mean of squared updates, like weights
    accum_grad_b: np.ndarray    # like bias
    accum_update_b: np.ndarray  # like bias
    epoch: int
    best_weights: np.ndarray
    best_bias: np.ndarray
    best_epoch: int
    best_valid_acc: float

    @classmethod
    def zeros(cls, n_features: int) -> "ReadoutState":
        w = np.zeros((int(n_features), N_CLASSES), np.float32)
        b = np.zeros((N_CLASSES,), np.float32)
        return cls(w, b.copy(), w.copy(), w.copy(), b.copy(), b.copy(), 0, w.copy(), b.copy(), 0, -1.0)

    @property
    def n_features(self) -> int:
        return int(self.weights.shape[0])

    def save(self, path):
        """Write the state as an npz file atomically."""
        return atomic_save_npz(path, **self.to_arrays())

    def to_arrays(self) -> dict:
        """The state as the arrays of its npz file."""
        arrays = {name: np.asarray(getattr(self, name)) for name in self._fields}
        arrays["epoch"] = np.asarray(int(self.epoch), np.int64)
        arrays["best_epoch"] = np.asarray(int(self.best_epoch), np.int64)
        arrays["best_valid_acc"] = np.asarray(float(self.best_valid_acc), np.float64)
        return arrays

    @classmethod
    def load(cls, path) -> "ReadoutState":
        try:
            data = load_npz(path)
        except FileNotFoundError:
            raise UserError(f"readout state {path} does not exist.") from None
        except (OSError, ValueError) as exc:
            raise UserError(f"readout state {path} cannot be read ({exc}); delete it to start the "
                            f"readout training again.") from None
        try:
            return cls.from_arrays(data)
        except ValueError as exc:
            raise UserError(f"readout state {path} is not usable ({exc}). Delete it to start the readout "
                            f"training again.") from None

    @classmethod
    def from_arrays(cls, data: dict) -> "ReadoutState":
        """The state held by the arrays of its npz file; ValueError naming what is missing or wrong."""
        missing = [name for name in cls._fields if name not in data]
        if missing:
            raise ValueError(f"it lacks {', '.join(missing)}; it was not written by this version of the toolkit")
        values = {}
        for name in cls._fields:
            if data[name].dtype.kind not in "iuf":
                raise ValueError(f"its {name} has dtype {data[name].dtype}, expected numbers")
            if name in ("epoch", "best_epoch", "best_valid_acc"):
                if data[name].shape != ():
                    raise ValueError(f"its {name} has shape {list(data[name].shape)}, expected a single number")
                values[name] = float(data[name]) if name == "best_valid_acc" else int(data[name])
            else:
                values[name] = np.asarray(data[name], np.float32)
                if not np.all(np.isfinite(values[name])):
                    raise ValueError(f"its {name} holds NaN or infinite values")
        state = cls(**values)
        state.check()
        if not (0 <= state.best_epoch <= state.epoch and -1.0 <= state.best_valid_acc <= 1.0):
            raise ValueError(f"its best epoch {state.best_epoch} (validation accuracy {state.best_valid_acc}) "
                             f"does not fit its {state.epoch} epochs")
        return state

    def check(self) -> None:
        """Raise ValueError when the arrays' shapes do not fit together."""
        w_shape, b_shape = self.weights.shape, (N_CLASSES,)
        if len(w_shape) != 2 or w_shape[1] != N_CLASSES:
            raise ValueError(f"readout weights must be [N_res, {N_CLASSES}], got {w_shape}")
        for name in ("accum_grad_w", "accum_update_w", "best_weights"):
            if getattr(self, name).shape != w_shape:
                raise ValueError(f"{name} has shape {getattr(self, name).shape}, expected {w_shape}")
        for name in ("bias", "accum_grad_b", "accum_update_b", "best_bias"):
            if getattr(self, name).shape != b_shape:
                raise ValueError(f"{name} has shape {getattr(self, name).shape}, expected {b_shape}")


# ----------------------------------------------------------------------------------------------
# Compiled training
# ----------------------------------------------------------------------------------------------

def _predict_tf(logits):
    """argmax over classes with ties going to the lowest index (tf.argmax leaves ties unspecified)."""
    top = tf.reduce_max(logits, axis=1, keepdims=True)
    idx = tf.range(N_CLASSES, dtype=tf.int32)[tf.newaxis, :]
    return tf.reduce_min(tf.where(logits >= top, idx, N_CLASSES), axis=1)


def _soft_targets_tf(labels):
    t = tf.one_hot(labels, N_CLASSES, on_value=1.0, off_value=-1.0, dtype=tf.float32)
    return tf.nn.softmax(t, axis=-1)


def _optimisation_barrier(tensor):
    """`tensor` unchanged, but XLA's simplifier may not rewrite the operation that made it (XLA only;
    without TensorFlow's XLA bridge module, `tensor` itself)."""
    try:
        from tensorflow.compiler.tf2xla.python.xla import optimization_barrier
    except ImportError:
        return tensor
    return optimization_barrier(tensor)[0]


def batch_loss_and_grads(x, targets, weights, bias, l2, in_xla: bool = False):
    """Loss of one batch and its gradients (dL/dW, dL/db), written out by hand.

    loss = mean_i CE(softmax(t_i), x_i W + b) + l2 * sum(W^2) / 2;
    dL/dlogits = (softmax(logits) - target) / batch.  `in_xla`: the caller is compiled by XLA.
    """
    logits = tf.matmul(x, weights) + bias
    ce = tf.nn.softmax_cross_entropy_with_logits(labels=targets, logits=logits)
    loss = tf.reduce_mean(ce) + l2 * tf.nn.l2_loss(weights)
    inv_batch = 1.0 / tf.cast(tf.shape(x)[0], tf.float32)
    g_logits = (tf.nn.softmax(logits) - targets) * inv_batch
    # dL/dW as (g^T x)^T rather than x^T g: the same products, but a faster product for a skinny g on CPUs
    # (a quarter less time per epoch).  XLA would fold the transpose back into the product (x^T g), so
    # under XLA a barrier keeps the product as written.
    g_w_t = tf.matmul(g_logits, x, transpose_a=True)                  # [10, N_res]
    if in_xla:
        g_w_t = _optimisation_barrier(g_w_t)
    g_w = tf.transpose(g_w_t) + l2 * weights
    g_b = tf.reduce_sum(g_logits, axis=0)
    return loss, g_w, g_b


def adadelta_update(var, accum_grad, accum_update, grad, lr, rho, eps):
    """One Adadelta step (the TF/Keras formulation); returns (var, accum_grad, accum_update)."""
    accum_grad = rho * accum_grad + (1.0 - rho) * tf.square(grad)
    update = tf.sqrt(accum_update + eps) * grad / tf.sqrt(accum_grad + eps)
    accum_update = rho * accum_update + (1.0 - rho) * tf.square(update)
    return var - lr * update, accum_grad, accum_update


@functools.lru_cache(maxsize=8)
def _build_training_fn(chunk: int, batch_size: int, constants: ReadoutConstants, jit_compile: bool):
    """A compiled function training up to `chunk` epochs (the actual number is a tensor argument) on
    x_train [n, N_res] in batches of `batch_size` consecutive rows.

    It returns the optimiser's state at the end, the weights and bias at the end of every epoch
    ([chunk, N_res, 10], [chunk, 10]) for the evaluation, and every epoch's training loss (float64 [chunk]).
    Cached, so that repeated `train_readout` calls with the same sizes reuse one compilation.
    """
    lr = tf.constant(constants.learning_rate, tf.float32)
    rho = tf.constant(constants.rho, tf.float32)
    eps = tf.constant(constants.epsilon, tf.float32)
    l2 = tf.constant(constants.l2, tf.float32)

    @tf.function(jit_compile=jit_compile, reduce_retracing=True)
    def train_epochs(n_epochs, x_train, y_train, weights, bias, acc_gw, acc_uw, acc_gb, acc_ub):
        n_batches = tf.shape(x_train)[0] // batch_size
        x_train = tf.reshape(x_train, [n_batches, batch_size, -1])       # the same buffer, seen as batches
        t_train = tf.reshape(_soft_targets_tf(y_train), [n_batches, batch_size, N_CLASSES])

        def batch_body(j, w, b, gw, uw, gb, ub, loss_sum):
            loss, g_w, g_b = batch_loss_and_grads(x_train[j], t_train[j], w, b, l2, in_xla=jit_compile)
            w, gw, uw = adadelta_update(w, gw, uw, g_w, lr, rho, eps)
            b, gb, ub = adadelta_update(b, gb, ub, g_b, lr, rho, eps)
            return j + 1, w, b, gw, uw, gb, ub, loss_sum + tf.cast(loss, tf.float64)

        def epoch_body(i, w, b, gw, uw, gb, ub, epoch_w, epoch_b, losses):
            _, w, b, gw, uw, gb, ub, loss_sum = tf.while_loop(
                lambda j, *_: j < n_batches, batch_body,
                (tf.constant(0), w, b, gw, uw, gb, ub, tf.constant(0.0, tf.float64)))
            epoch_w = tf.tensor_scatter_nd_update(epoch_w, [[i]], w[tf.newaxis])
            epoch_b = tf.tensor_scatter_nd_update(epoch_b, [[i]], b[tf.newaxis])
            losses = tf.tensor_scatter_nd_update(losses, [[i]], [loss_sum / tf.cast(n_batches, tf.float64)])
            return i + 1, w, b, gw, uw, gb, ub, epoch_w, epoch_b, losses

        loop_vars = (tf.constant(0), weights, bias, acc_gw, acc_uw, acc_gb, acc_ub,
                     tf.zeros([chunk, tf.shape(weights)[0], N_CLASSES]), tf.zeros([chunk, N_CLASSES]),
                     tf.zeros([chunk], tf.float64))
        out = tf.while_loop(lambda i, *_: i < n_epochs, epoch_body, loop_vars, maximum_iterations=chunk)
        return out[1:]

    return train_epochs


@functools.lru_cache(maxsize=8)
def _build_evaluation_fn(chunk: int, constants: ReadoutConstants, jit_compile: bool):
    """A compiled function evaluating the weights of up to `chunk` epochs: for each, the numbers of
    correctly classified training, validation and test samples (int32 [chunk, 3]) and the validation loss
    (float64 [chunk]).  Cached like `_build_training_fn`."""
    l2 = tf.constant(constants.l2, tf.float32)

    def correct_and_logits(x, labels, weights, bias):
        logits = tf.matmul(x, weights) + bias
        return tf.reduce_sum(tf.cast(tf.equal(_predict_tf(logits), labels), tf.int32)), logits

    @tf.function(jit_compile=jit_compile, reduce_retracing=True)
    def evaluate_epochs(n_epochs, epoch_w, epoch_b, x_train, y_train, x_valid, y_valid, x_test, y_test):
        t_valid = _soft_targets_tf(y_valid)

        def body(i, losses, counts):
            w, b = epoch_w[i], epoch_b[i]
            train_correct, _ = correct_and_logits(x_train, y_train, w, b)
            valid_correct, valid_logits = correct_and_logits(x_valid, y_valid, w, b)
            valid_loss = tf.reduce_mean(
                tf.nn.softmax_cross_entropy_with_logits(labels=t_valid, logits=valid_logits)) \
                + l2 * tf.nn.l2_loss(w)
            test_correct, _ = correct_and_logits(x_test, y_test, w, b)
            losses = tf.tensor_scatter_nd_update(losses, [[i]], [tf.cast(valid_loss, tf.float64)])
            counts = tf.tensor_scatter_nd_update(
                counts, [[i]], tf.stack([train_correct, valid_correct, test_correct])[tf.newaxis])
            return i + 1, losses, counts

        loop_vars = (tf.constant(0), tf.zeros([chunk], tf.float64), tf.zeros([chunk, 3], tf.int32))
        out = tf.while_loop(lambda i, *_: i < n_epochs, body, loop_vars, maximum_iterations=chunk)
        return out[1:]

    return evaluate_epochs


def _split(data, n_features: int, name: str):
    """(x, y) -> float32 [n, N_res], int32 [n]; None -> empty arrays."""
    if data is None:
        return np.zeros((0, n_features), np.float32), np.zeros((0,), np.int32)
    x, y = data
    x = np.ascontiguousarray(x, dtype=np.float32)
    y = np.asarray(y)
    if x.ndim != 2 or x.shape[1] != n_features:
        raise ValueError(f"{name} features must be [n, {n_features}], got {x.shape}")
    if y.shape != (x.shape[0],):
        raise ValueError(f"{name} labels must be [{x.shape[0]}], got {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= N_CLASSES):
        raise ValueError(f"{name} labels must lie in 0..{N_CLASSES - 1}")
    return x, y.astype(np.int32)


class _Trained(NamedTuple):
    """The end of a chunk of trained epochs, before their evaluation."""

    weights: np.ndarray
    bias: np.ndarray
    accum_grad_w: np.ndarray
    accum_update_w: np.ndarray
    accum_grad_b: np.ndarray
    accum_update_b: np.ndarray
    epoch: int                  # completed epochs at the end of the chunk
    n_epochs: int               # epochs in the chunk
    epoch_weights: tf.Tensor    # weights at the end of each epoch of the chunk, [chunk, N_res, 10]
    epoch_bias: tf.Tensor       # [chunk, 10]
    train_losses: np.ndarray    # float64 [chunk]


def train_readout(train, valid, test=None, *, batch_size: int, epochs: int,
                  state: Optional[ReadoutState] = None,
                  on_epochs: Optional[Callable[[ReadoutState, list], None]] = None,
                  chunk_epochs: int = 25, constants: ReadoutConstants = PAPER.readout,
                  jit_compile: bool = True):
    """Train the readout until `state.epoch == epochs`; returns (state, history rows of this call).

    train, valid, test: (features [n, N_res] already normalised with `normalise_counts`, labels [n]);
    `test` may be None (its accuracy is then NaN).  The training set is fed in order in batches of
    `batch_size` (which must divide its size).  `epochs` is the total number of epochs: a resumed `state`
    continues from `state.epoch` and gives exactly the numbers of an uninterrupted run.  Up to
    `chunk_epochs` epochs run in one compiled call; once a chunk is evaluated (while the next one trains)
    `on_epochs(state, rows)` is called on this thread with the state at the end of that chunk and its
    history rows (for checkpoints and progress bars).  The numbers do not depend on `chunk_epochs`.
    """
    x_train, y_train = train
    x_train = np.asarray(x_train)
    if x_train.ndim != 2:
        raise ValueError(f"training features must be [n, N_res], got {x_train.shape}")
    n_features = x_train.shape[1]
    x_train, y_train = _split(train, n_features, "training")
    x_valid, y_valid = _split(valid, n_features, "validation")
    x_test, y_test = _split(test, n_features, "test")
    batch_size = int(batch_size)
    n_train = x_train.shape[0]
    if batch_size < 1 or n_train == 0 or n_train % batch_size:
        raise UserError(f"the readout's batch size {batch_size} must divide the number of training "
                        f"samples {n_train}.")
    if x_valid.shape[0] == 0:
        raise UserError("the readout needs at least one validation sample to choose its best epoch.")
    if chunk_epochs < 1:
        raise ValueError("chunk_epochs must be at least 1")
    state = ReadoutState.zeros(n_features) if state is None else state
    state.check()
    if state.n_features != n_features:
        raise UserError(f"the saved readout state has {state.n_features} inputs but the spike counts have "
                        f"{n_features}; delete the readout state to start again.")
    history = []
    if state.epoch >= epochs:
        return state, history

    chunk = int(min(chunk_epochs, epochs - state.epoch))
    train_epochs = _build_training_fn(chunk, batch_size, constants, jit_compile)
    evaluate_epochs = _build_evaluation_fn(chunk, constants, jit_compile)
    # copied to the default device once (tf.identity places them there; a no-op on CPUs) and shared by the
    # training and the evaluation
    eval_sets = {name: tf.identity(tf.constant(value)) for name, value in (
        ("x_train", x_train), ("y_train", y_train), ("x_valid", x_valid), ("y_valid", y_valid),
        ("x_test", x_test), ("y_test", y_test))}
    train_set = {name: eval_sets[name] for name in ("x_train", "y_train")}
    n_sets = (n_train, x_valid.shape[0], x_test.shape[0])

    def train(start) -> _Trained:
        """Up to `chunk` epochs from `start` (a ReadoutState or a _Trained)."""
        n_now = min(chunk, epochs - start.epoch)
        out = train_epochs(tf.constant(n_now, tf.int32), weights=tf.constant(start.weights),
                           bias=tf.constant(start.bias), acc_gw=tf.constant(start.accum_grad_w),
                           acc_uw=tf.constant(start.accum_update_w), acc_gb=tf.constant(start.accum_grad_b),
                           acc_ub=tf.constant(start.accum_update_b), **train_set)
        w, b, gw, uw, gb, ub = (t.numpy() for t in out[:6])
        return _Trained(w, b, gw, uw, gb, ub, start.epoch + n_now, n_now, out[6], out[7], out[8].numpy())

    def evaluate(trained: _Trained):
        """(validation losses, correct counts) of the epochs of `trained`; run in the helper thread."""
        out = evaluate_epochs(tf.constant(trained.n_epochs, tf.int32), trained.epoch_weights,
                              trained.epoch_bias, **eval_sets)
        return tuple(t.numpy() for t in out)

    def report(state: ReadoutState, trained: _Trained, evaluation) -> ReadoutState:
        """The state at the end of `trained`'s epochs, its best epoch updated; calls on_epochs."""
        valid_losses, counts = evaluation
        rows = []
        best = (state.best_weights, state.best_bias, state.best_epoch, state.best_valid_acc)
        # compared as counts of correct samples: exact whatever the last bit of a saved accuracy
        best_correct = round(state.best_valid_acc * n_sets[1])
        for k in range(trained.n_epochs):
            accs = [counts[k, m] / n if n else float("nan") for m, n in enumerate(n_sets)]
            epoch = state.epoch + k + 1
            rows.append({"epoch": epoch,
                         "train_loss": float(trained.train_losses[k]), "valid_loss": float(valid_losses[k]),
                         "train_acc": float(accs[0]), "valid_acc": float(accs[1]),
                         "test_acc": float(accs[2])})
            if counts[k, 1] > best_correct:
                best_correct = int(counts[k, 1])
                best = (trained.epoch_weights[k].numpy(), trained.epoch_bias[k].numpy(), epoch, float(accs[1]))
        state = ReadoutState(trained.weights, trained.bias, trained.accum_grad_w, trained.accum_update_w,
                             trained.accum_grad_b, trained.accum_update_b, trained.epoch, *best)
        history.extend(rows)
        if on_epochs is not None:
            on_epochs(state, rows)
        return state

    # Epochs are trained in chunks on this thread while the previous chunk's epochs are evaluated on a
    # helper thread: the evaluation of an epoch depends only on its weights, so the two overlap.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="readout-evaluation") as helper:
        latest, pending = state, None     # the last trained chunk; (a chunk, its evaluation) to report
        while latest.epoch < epochs or pending is not None:
            trained = train(latest) if latest.epoch < epochs else None
            if pending is not None:
                state = report(state, pending[0], pending[1].result())
            pending = None if trained is None else (trained, helper.submit(evaluate, trained))
            latest = latest if trained is None else trained
    return state, history


# ----------------------------------------------------------------------------------------------
# History
# ----------------------------------------------------------------------------------------------

def best_epoch(history: Sequence[dict]) -> Optional[dict]:
    """The row of the first epoch attaining the highest validation accuracy (None for no rows)."""
    best = None
    for row in history:
        acc = float(row["valid_acc"])
        if math.isnan(acc):
            continue
        if best is None or acc > float(best["valid_acc"]):
            best = row
    return best


def time_epochs(n_features: int = 1000, n_train: int = 50000, n_valid: int = 10000, n_test: int = 10000,
                batch_size: int = 250, epochs: int = 10, chunks: int = 4, jit_compile: bool = True,
                seed: int = 0) -> dict:
    """Measure the readout's wall time per epoch on random counts.

    Runs `chunks` (at least 3) chunks of `epochs` epochs.  A chunk's epochs are evaluated while the next
    chunk trains, so the steady state lies between the first and the last report: the first chunk also
    holds the compilation and the last one's evaluation runs alone.
    """
    if chunks < 3:
        raise ValueError("time_epochs needs at least 3 chunks to see the steady state")
    rng = np.random.default_rng(seed)

    def split(n):
        counts = rng.poisson(2.0, size=(n, n_features)).astype(np.float32)
        return normalise_counts(counts, batch_size), rng.integers(0, N_CLASSES, n)

    train, valid, test = split(n_train), split(n_valid), split(n_test)
    stamps = []
    start = time.perf_counter()
    train_readout(train, valid, test, batch_size=batch_size, epochs=chunks * epochs, chunk_epochs=epochs,
                  jit_compile=jit_compile, on_epochs=lambda s, r: stamps.append(time.perf_counter()))
    per_epoch = (stamps[-2] - stamps[0]) / ((chunks - 2) * epochs)
    return {"compile_s": max(0.0, stamps[0] - start - 2 * per_epoch * epochs), "per_epoch_s": per_epoch,
            "jit_compile": jit_compile, "n_features": n_features, "n_train": n_train,
            "n_valid": n_valid, "n_test": n_test, "batch_size": batch_size}
