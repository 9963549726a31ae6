"""Counter-based input draws: the NumPy and TensorFlow twins agree bit for bit, rates are right."""
import math

import numpy as np
import tensorflow as tf

from lsm_core.model.randomness import (
    hash32_np,
    hash32_tf,
    pixel_codes_np,
    sample_keys,
    step_pixel_uniform_np,
    step_pixel_uniform_tf,
)


def test_hash_twins_agree_and_hash_is_a_bijection_on_a_range():
    x = np.arange(100000, dtype=np.uint32) * np.uint32(7919)
    np.testing.assert_array_equal(hash32_np(x), hash32_tf(tf.constant(x)).numpy())
    assert len(np.unique(hash32_np(np.arange(100000, dtype=np.uint32)))) == 100000


def test_uniform_twins_agree():
    keys = sample_keys(3, "valid", np.arange(7))
    for t in (0, 1, 249):
        np.testing.assert_array_equal(
            step_pixel_uniform_np(keys, t, 30),
            step_pixel_uniform_tf(tf.constant(keys), tf.constant(t), tf.constant(pixel_codes_np(30))).numpy())


def test_bernoulli_draws_have_the_asked_rate_and_no_correlation():
    keys = sample_keys(0, "train", np.arange(200))
    u = np.stack([step_pixel_uniform_np(keys, t, 50) for t in range(100)])     # [T, B, pixels]
    assert u.min() >= 0.0 and u.max() < 1.0
    for p in (0.05, 0.3, 0.8):
        assert abs((u < p).mean() - p) < 4 * math.sqrt(p * (1 - p) / u.size)
    assert abs(np.corrcoef(u[:-1].ravel(), u[1:].ravel())[0, 1]) < 0.01        # step to step
    assert abs(np.corrcoef(u[:, :-1].ravel(), u[:, 1:].ravel())[0, 1]) < 0.01  # sample to sample


def test_keys_depend_on_seed_split_and_index_only():
    a = sample_keys(1, "train", np.arange(10))
    np.testing.assert_array_equal(a[3:5], sample_keys(1, "train", [3, 4]))
    assert not np.array_equal(a, sample_keys(2, "train", np.arange(10)))
    assert not np.array_equal(a, sample_keys(1, "test", np.arange(10)))
    assert len(np.unique(sample_keys(1, "train", np.arange(50000)))) == 50000
