"""The closed-form ridge readout (docs/evaluation.md#the-ridge-readout): a linear map from a liquid's
features to 10 class scores, solved exactly instead of trained for 5000 epochs.

Features are standardised with the training split's mean and standard deviation (a constant feature
becomes 0), targets are one-hot (or the paper's soft targets), and for a penalty alpha the weights are

    W = (Xᵀ X + alpha I)⁻¹ Xᵀ Y,   bias = mean of Y over the training split,

with X the standardised training features [n, F] and Y the centred targets [n, 10].  Xᵀ X and Xᵀ Y are
accumulated in float64, a block of rows at a time (so K time bins of a 1000-neuron liquid, 10,000
features, never need the whole float64 matrix).  One eigendecomposition of Xᵀ X then gives W for every
alpha of the grid at the cost of two matrix products each.  The grid is relative: alpha = lambda *
trace(Xᵀ X) / F, lambda in `LAMBDAS`; the chosen lambda is the one with the best validation accuracy
(ties: the larger penalty), and the test accuracy is reported at that choice only.

NumPy only (soft targets borrow the paper readout's definition, which imports TensorFlow).  Cost: one pass over the features plus an F x F eigendecomposition (1000
features: about a second; 10,000: about a minute on 2 cores).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from lsm_core.config import N_CLASSES

LAMBDAS = tuple(10.0 ** k for k in range(-7, 3))     # penalty grid, relative to the mean eigenvalue of XᵀX
TARGETS = ("onehot", "soft")
ROWS_PER_BLOCK = 2048                                 # rows converted to float64 at a time


def targets_of(labels, kind: str = "onehot") -> np.ndarray:
    """Regression targets float64 [n, 10]: one-hot (1 at the label), or the paper's soft targets
    softmax(+1 at the label, -1 elsewhere)."""
    labels = np.asarray(labels, np.int64)
    if kind == "onehot":
        out = np.zeros((labels.shape[0], N_CLASSES))
        out[np.arange(labels.shape[0]), labels] = 1.0
        return out
    if kind == "soft":
        from lsm_core.analysis.readout import soft_targets  # the paper readout's (imports TensorFlow)
        return soft_targets(labels).astype(np.float64)
    raise ValueError(f"targets must be one of {TARGETS}, got {kind!r}")


def _blocks(x):
    """(first row, rows as float64 [r, F]) for consecutive blocks of ROWS_PER_BLOCK rows of x [n, ...]."""
    rows = ROWS_PER_BLOCK
    for start in range(0, x.shape[0], rows):
        yield start, np.asarray(x[start:start + rows], np.float64).reshape(min(rows, x.shape[0] - start), -1)


@dataclass(frozen=True, eq=False)
class RidgeReadout:
    """A fitted ridge readout.  weights float64 [F, 10], bias [10], mean and scale [F] (the training
    standardisation), alpha (the absolute penalty chosen), lambdas [L] and valid_accs [L] (the grid and
    the validation accuracy at each point), chosen (index into the grid)."""

    weights: np.ndarray
    bias: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    alpha: float
    lambdas: np.ndarray
    valid_accs: np.ndarray
    chosen: int
    targets: str

    def scores(self, x) -> np.ndarray:
        """Class scores float64 [n, 10] of features [n, ...] (flattened to F per row)."""
        return np.concatenate([((block - self.mean) / self.scale) @ self.weights + self.bias
                               for _, block in _blocks(x)]) if len(x) else np.zeros((0, N_CLASSES))

    def predict(self, x) -> np.ndarray:
        """Predicted classes int64 [n] (ties go to the lowest class)."""
        return np.argmax(self.scores(x), axis=1)

    def accuracy(self, x, labels) -> float:
        labels = np.asarray(labels)
        return float(np.mean(self.predict(x) == labels)) if labels.shape[0] else float("nan")

    def to_arrays(self) -> dict:
        return dict(weights=self.weights, bias=self.bias, mean=self.mean, scale=self.scale,
                    alpha=np.float64(self.alpha), lambdas=self.lambdas, valid_accs=self.valid_accs,
                    chosen=np.int64(self.chosen), targets=np.str_(self.targets))


def _moments(x, y) -> tuple:
    """Sums over the rows of x [n, F] and y [n, 10] in float64: Σx, Σy, XᵀX, XᵀY."""
    features = int(np.prod(x.shape[1:]))
    sum_x, sum_y = np.zeros(features), y.sum(axis=0)
    xtx, xty = np.zeros((features, features)), np.zeros((features, y.shape[1]))
    for start, block in _blocks(x):
        sum_x += block.sum(axis=0)
        xtx += block.T @ block
        xty += block.T @ y[start:start + block.shape[0]]
    return sum_x, sum_y, xtx, xty


def fit_ridge(train: tuple, valid: tuple, targets: str = "onehot", lambdas=LAMBDAS,
              log: Optional[Callable[[str], None]] = None) -> RidgeReadout:
    """Fit on train = (features [n, ...], labels [n]) and choose the penalty by accuracy on valid.

    Features may be [n, F] or [n, K, N] (flattened per row).  `lambdas` are relative penalties (see the
    module's docstring), each > 0.
    """
    (x, labels), (x_valid, labels_valid) = train, valid
    if len(x) < 2:
        raise ValueError("the ridge readout needs at least 2 training samples")
    lambdas = np.asarray(sorted(lambdas), np.float64)
    if lambdas.size == 0 or np.any(lambdas <= 0):
        raise ValueError(f"lambdas must be positive, got {lambdas.tolist()}")
    y = targets_of(labels, targets)
    n = x.shape[0]
    sum_x, sum_y, xtx, xty = _moments(x, y)
    mean, y_mean = sum_x / n, sum_y / n
    gram = xtx - n * np.outer(mean, mean)                 # centred
    cross = xty - n * np.outer(mean, y_mean)
    variance = np.clip(np.diag(gram) / n, 0.0, None)
    scale = np.where(variance > 0, np.sqrt(variance), 1.0)
    gram = gram / np.outer(scale, scale)                  # standardised: unit diagonal / n
    cross = cross / scale[:, None]
    if log:
        log(f"ridge: {n} samples x {gram.shape[0]} features, eigendecomposition of X^T X")
    eigenvalues, vectors = np.linalg.eigh(gram)
    eigenvalues = np.clip(eigenvalues, 0.0, None)
    projected = vectors.T @ cross                         # [F, 10]
    mean_eigenvalue = max(float(np.trace(gram)) / gram.shape[0], np.finfo(np.float64).tiny)
    valid_accs, solutions = [], []
    for lam in lambdas:
        alpha = lam * mean_eigenvalue
        weights = vectors @ (projected / (eigenvalues + alpha)[:, None])
        readout = RidgeReadout(weights, y_mean, mean, scale, alpha, lambdas, np.zeros(0), -1, targets)
        valid_accs.append(readout.accuracy(x_valid, labels_valid))
        solutions.append((alpha, weights))
    valid_accs = np.asarray(valid_accs)
    chosen = int(len(lambdas) - 1 - np.argmax(valid_accs[::-1]))     # best; ties: the larger penalty
    alpha, weights = solutions[chosen]
    return RidgeReadout(weights, y_mean, mean, scale, alpha, lambdas, valid_accs, chosen, targets)
