"""lsm_core.analysis.ridge: the closed-form ridge readout against a direct NumPy solve, the choice of the
penalty, and features of any shape."""
import numpy as np
import pytest

from lsm_core.analysis.ridge import LAMBDAS, fit_ridge, targets_of


def toy(n, seed, features=6, noise=0.0):
    """Ten well separated classes: each label shifts its own feature pair; a constant feature too."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    x = rng.normal(0.0, 0.2 + noise, (n, features + 10))
    x[np.arange(n), features + labels] += 3.0
    x[:, 0] = 5.0                                             # constant: standardised to 0
    return x, labels


def direct_solve(x, labels, alpha, kind="onehot"):
    """The definition written out: standardise with the training statistics, centre the targets, solve."""
    mean, std = x.mean(axis=0), x.std(axis=0)
    scale = np.where(std > 0, std, 1.0)
    z = (x - mean) / scale
    y = targets_of(labels, kind)
    weights = np.linalg.solve(z.T @ z + alpha * np.eye(z.shape[1]), z.T @ (y - y.mean(axis=0)))
    return weights, y.mean(axis=0), mean, scale


@pytest.mark.parametrize("kind", ["onehot", "soft"])
def test_weights_equal_a_direct_solve_and_separable_data_is_classified_exactly(kind):
    train, valid = toy(300, 0), toy(100, 1)
    fitted = fit_ridge(train, valid, targets=kind, lambdas=[1e-2])
    weights, bias, mean, scale = direct_solve(*train, fitted.alpha, kind)
    np.testing.assert_allclose(fitted.weights, weights, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(fitted.bias, bias, rtol=1e-12)
    np.testing.assert_allclose(fitted.mean, mean, rtol=1e-12)
    np.testing.assert_allclose(fitted.scale, scale, rtol=1e-9)
    z = (train[0] - mean) / scale                           # alpha = lambda * trace(ZᵀZ) / F
    assert fitted.alpha == pytest.approx(1e-2 * np.trace(z.T @ z) / z.shape[1], rel=1e-10)
    assert fitted.accuracy(*train) == 1.0 and fitted.accuracy(*valid) == 1.0


def test_soft_targets_are_an_affine_map_of_one_hot_so_the_classes_are_the_same():
    """softmax(+1 at the label, -1 elsewhere) = c * onehot + d: centred, the weights only scale by c."""
    train, valid = toy(200, 8, noise=1.0), toy(100, 9, noise=1.0)
    onehot, soft = fit_ridge(train, valid, lambdas=[0.1]), fit_ridge(train, valid, targets="soft", lambdas=[0.1])
    c = soft.weights[0, 0] / onehot.weights[0, 0]
    np.testing.assert_allclose(soft.weights, c * onehot.weights, rtol=1e-6, atol=1e-12)
    np.testing.assert_array_equal(soft.predict(valid[0]), onehot.predict(valid[0]))


def test_the_penalty_is_the_best_on_validation_and_ties_take_the_larger():
    train, valid = toy(200, 2, noise=1.5), toy(200, 3, noise=1.5)
    fitted = fit_ridge(train, valid)
    assert fitted.lambdas.tolist() == sorted(LAMBDAS)
    best = fitted.valid_accs.max()
    assert fitted.valid_accs[fitted.chosen] == best
    assert np.all(fitted.valid_accs[fitted.chosen + 1:] < best)          # no larger penalty does as well
    for i, lam in enumerate(fitted.lambdas):                             # each grid point is its own solve
        alone = fit_ridge(train, valid, lambdas=[lam])
        assert alone.valid_accs[0] == fitted.valid_accs[i]


def test_time_binned_features_are_flattened_per_sample():
    x, labels = toy(120, 4, features=10)
    binned = x.reshape(120, 2, 10)                                       # [n, K, N]
    flat = fit_ridge((x, labels), (x[:40], labels[:40]), lambdas=[0.1])
    bins = fit_ridge((binned, labels), (binned[:40], labels[:40]), lambdas=[0.1])
    np.testing.assert_array_equal(flat.weights, bins.weights)
    np.testing.assert_array_equal(flat.predict(x), bins.predict(binned))


def test_accumulation_in_blocks_equals_one_block(monkeypatch):
    from lsm_core.analysis import ridge
    train, valid = toy(500, 5), toy(50, 6)
    whole = fit_ridge(train, valid, lambdas=[1e-3])
    seen = []
    monkeypatch.setattr(ridge, "ROWS_PER_BLOCK", 7)
    original = ridge._blocks
    monkeypatch.setattr(ridge, "_blocks", lambda x: [seen.append(len(b)) or (s, b) for s, b in original(x)])
    blocks = fit_ridge(train, valid, lambdas=[1e-3])
    assert max(seen) == 7 and sum(seen[:72]) == 500                     # the training rows, 7 at a time
    np.testing.assert_allclose(blocks.weights, whole.weights, rtol=1e-9, atol=1e-12)


def test_bad_arguments_are_refused():
    train = toy(20, 7)
    with pytest.raises(ValueError, match="positive"):
        fit_ridge(train, train, lambdas=[0.0])
    with pytest.raises(ValueError, match="targets"):
        fit_ridge(train, train, targets="hinge")
    with pytest.raises(ValueError, match="at least 2"):
        fit_ridge((train[0][:1], train[1][:1]), train)
