"""Counter-based random numbers for the Bernoulli input: one key per sample, no hidden RNG state.

The uniform number that decides whether input pixel `p` of a sample spikes at millisecond `t` is a
pure function of (sample key, t, p).  Hence a sample's input spike train does not depend on the
batch it is simulated in, on the batch size, or on where a resumed run restarts; and a plain NumPy
loop can reproduce the compiled simulation exactly.  The mixing function is the "lowbias32" integer
hash (a bijection on 32-bit words with good avalanche behaviour), applied in two rounds.
"""
from __future__ import annotations

import numpy as np

_M1 = 0x7FEB352D
_M2 = 0x846CA68B
_GOLDEN = 0x9E3779B9
_STEP_SALT = 0x632BE5AB

SPLIT_IDS = {"train": 1, "valid": 2, "test": 3, "init": 4, "noisy_test": 5, "simulate": 6}


def hash32_np(x) -> np.ndarray:
    """lowbias32 on uint32 NumPy arrays (wrapping arithmetic)."""
    x = np.asarray(x, dtype=np.uint32).copy()
    with np.errstate(over="ignore"):
        x ^= x >> np.uint32(16)
        x *= np.uint32(_M1)
        x ^= x >> np.uint32(15)
        x *= np.uint32(_M2)
        x ^= x >> np.uint32(16)
    return x


def sample_keys(seed: int, split: str, indices) -> np.ndarray:
    """uint32 key of each sample: a hash of (run seed, split, sample index in its split)."""
    indices = np.asarray(indices, dtype=np.uint64)
    base = hash32_np(np.uint32(seed % 2**32) ^ hash32_np(np.uint32(SPLIT_IDS[split])))
    low = (indices & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    with np.errstate(over="ignore"):
        return hash32_np(base ^ hash32_np(low + np.uint32(_GOLDEN)))


def step_pixel_uniform_np(keys, t: int, n_input: int) -> np.ndarray:
    """Uniform numbers in [0, 1) for every (sample, input pixel) at step t: float32 [B, n_input]."""
    keys = np.asarray(keys, dtype=np.uint32)
    with np.errstate(over="ignore"):
        step_key = hash32_np(keys ^ hash32_np(np.uint32(t) + np.uint32(_STEP_SALT)))
        bits = hash32_np(step_key[:, None] ^ pixel_codes_np(n_input)[None, :])
    return ((bits >> np.uint32(8)).astype(np.float32) * np.float32(2.0 ** -24))


# The TensorFlow twin lives here too so that both stay side by side; TensorFlow is imported lazily.

def hash32_tf(x):
    import tensorflow as tf

    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(16, tf.uint32)))
    x = x * tf.constant(_M1, tf.uint32)
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(15, tf.uint32)))
    x = x * tf.constant(_M2, tf.uint32)
    return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(16, tf.uint32)))


def step_pixel_uniform_tf(keys, t, pixel_codes):
    """TensorFlow version of `step_pixel_uniform_np`.

    keys: uint32 [B]; t: int32 scalar step; pixel_codes: uint32 [n_input] = arange * golden.
    Returns float32 [B, n_input].
    """
    import tensorflow as tf

    t_code = hash32_tf(tf.cast(t, tf.uint32) + tf.constant(_STEP_SALT, tf.uint32))
    step_key = hash32_tf(tf.bitwise.bitwise_xor(keys, t_code))
    bits = hash32_tf(tf.bitwise.bitwise_xor(step_key[:, None], pixel_codes[None, :]))
    return tf.cast(tf.bitwise.right_shift(bits, tf.constant(8, tf.uint32)), tf.float32) * (2.0 ** -24)


def pixel_codes_np(n_input: int) -> np.ndarray:
    with np.errstate(over="ignore"):
        return np.arange(n_input, dtype=np.uint32) * np.uint32(_GOLDEN)
