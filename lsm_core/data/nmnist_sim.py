"""Simulated N-MNIST: MNIST digits seen by a model event camera through three saccades
(docs/file-formats.md#the-simulated-n-mnist).

The real N-MNIST (Orchard et al. 2015) was recorded by moving an ATIS event camera on a pan-tilt
unit in front of a monitor that showed each MNIST digit: three saccades of about 100 ms each along a
small isosceles triangle that returns to its start, 300 ms per recording, a 34 x 34 pixel view (the
28 x 28 digit plus room for the motion), about 4,000 events per recording.  This module makes a
stand-in with the same file format and layout from the MNIST digits, for when the real recordings
cannot be had.  Everything it writes is marked as simulated (`SIMULATED.json`).

The model, per recording (all parameters in `SimParams`, recorded in `SIMULATED.json`):

* Scene: the digit's pixel values p = x / 255, blurred by a Gaussian point-spread function
  (`psf_sigma_px`), shown as intensity I = b + (1 - b) p on a dark monitor (`background` b, the
  monitor's black level relative to its white); outside the digit I = b.
* Motion: the digit's top-left corner moves along the triangle (0, 0) -> (dx, dy) -> (2 dx, 0) ->
  (0, 0) in sensor pixels (x right, y down), one saccade per `saccade_ms`, each with a
  minimum-jerk profile (position 10u^3 - 15u^4 + 6u^5 of the way, u the fraction of the saccade's
  time), so the speed is zero at the turning points and peaks mid-saccade, as for the pan-tilt
  unit.  The triangle's bounding box is centred in the 34 x 34 view.  Every recording follows the
  same path (one motor program for the whole real dataset).
* Optics: each sensor pixel samples the moving intensity image at its centre with bilinear
  interpolation (sub-pixel motion gives smooth intensity ramps).
* Pixels: log-intensity change detectors simulated on a grid of `dt_ms`.  A pixel keeps a reference
  log intensity (at t = 0: the static scene's).  When log I rises by at least its ON threshold above
  the reference it emits ON events (polarity 1), when it falls by at least its OFF threshold it
  emits OFF events (polarity 0): k events for a change of k thresholds within one step, at the
  times where the linearly interpolated log intensity crosses each level, and the reference moves
  by k thresholds.  The pixel is then blind for `refractory_ms`, after which its reference is reset
  to the current log intensity (changes during the blind time are lost, as in a DVS/ATIS pixel
  held in reset).  Thresholds mismatch from pixel to pixel: ON and OFF thresholds of each pixel are
  `contrast_threshold` * (1 + `threshold_mismatch` * N(0, 1)), drawn per recording, floored at 30 %.
* Read-out: each event's timestamp gets Gaussian jitter (`jitter_ms`), is clipped to the recording
  and truncated to whole µs.
* Noise: background events at `noise_rate_hz` per pixel (Poisson in time, uniform over pixels,
  polarity 50/50), independent of the scene.

Calibration (what was matched, and how; measured on 4,000 digits, see `SIMULATED.json` of a set):
* Events per recording: the published N-MNIST averages about 4,000 per 300 ms recording.  With the
  geometry above fixed, `contrast_threshold` (0.22) was set so that the mean over MNIST digits is
  4,010.  The spread was not tuned: it follows from how much ink a digit carries (sd ~790, 5-95 %
  range ~2,500-5,250; digit 1 ~2,600, digit 0 ~4,900), as in the real data, where thin digits give
  fewer events.
* Polarity: equal ON and OFF thresholds on a bright digit on a dark background give an ON fraction
  of 0.507 (leading edges brighten, trailing edges darken; N-MNIST is roughly balanced).
* Saccades: each saccade carries events (fractions 0.38, 0.29, 0.34: the first, down-right,
  crosses the usual right-leaning slant of handwriting, the second runs along it), concentrated
  mid-saccade where the motion is fastest: under 1 % of the events lie within 5 ms of the turning
  points at 0, 100, 200 and 300 ms.
* Active pixels: 34 % of the 1,156 pixels emit at least one event in a recording (the strokes swept
  by the few pixels of motion); noise adds ~35 scattered events per recording (~1 %).

Randomness: recording i of source set s ("train" or "test") draws everything from its own
generator, seeded by (seed, s, i) through NumPy's SeedSequence; the deterministic part of the
simulation is element-wise.  So a recording's bytes depend only on (seed, set, index, params), not
on batch size, chunking, or on resuming an interrupted run.

Layout written (what the N-MNIST readers expect): `<out>/train_all/`, `<out>/valid_all/`,
`<out>/test_all/`, each with `NNNNN.bin` (1-based MNIST index within its source set: training
recordings 00001-50000 in train_all, 50001-60000 in valid_all, test 00001-10000 in test_all) and
`labels.csv` (`file,label`), then `<out>/SIMULATED.json` last.
"""
from __future__ import annotations

import argparse
import itertools
import math
import os
import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from lsm_core.data.events import SENSOR, SIMULATED_FOLDER, Events, read_bin, write_bin
from lsm_core.data.images import N_TEST_FILE, N_TRAIN_FILE, TRAIN_POOL, load_image_dataset
from lsm_core.errors import UserError
from lsm_core.places import data_dir as default_data_dir
from lsm_core.progress import progress_bar
from lsm_core.storage import atomic_write_json, atomic_write_text, read_json_file

GENERATOR = "lsm_core.nmnist_sim"
VERSION = 1
MARKER = "SIMULATED.json"
IN_PROGRESS = ".simulate-nmnist.in-progress.json"   # written first, removed when SIMULATED.json is there
SUBSETS = ("train_all", "valid_all", "test_all")
SOURCE_IDS = {"train": 1, "test": 2}                 # source set of a recording in its RNG seed
DIGIT = 28                                          # MNIST digits are 28 x 28
N_PIXELS = SENSOR * SENSOR
TARGET_MEAN_EVENTS = 4000                           # published N-MNIST: about 4,000 events per recording
CHUNK = 250                                         # recordings simulated together
WRITE_THREADS = 8                                   # file writes (fsync) overlap in threads


@dataclass(frozen=True)
class SimParams:
    """Parameters of the event-camera model (module docstring); times in ms, sizes in sensor pixels."""

    duration_ms: float = 300.0        # recording length: three saccades
    saccade_ms: float = 100.0         # one side of the triangle
    saccade_dx_px: float = 2.5        # triangle (0,0) -> (dx,dy) -> (2dx,0) -> (0,0)
    saccade_dy_px: float = 4.0
    dt_ms: float = 0.5                # internal time step of the pixel simulation
    psf_sigma_px: float = 0.5         # Gaussian blur of the optics
    background: float = 0.15          # monitor black level relative to white
    contrast_threshold: float = 0.22  # log-intensity change per event (ON and OFF)
    threshold_mismatch: float = 0.1   # relative std of per-pixel thresholds
    refractory_ms: float = 1.0        # blind time after an event
    jitter_ms: float = 0.3            # std of timestamp jitter
    noise_rate_hz: float = 0.1        # background events per pixel and second

    def as_dict(self) -> dict:
        return asdict(self)

    def check(self) -> SimParams:
        """Raise ValueError for values the model cannot use; returns self."""
        positive = ("duration_ms", "saccade_ms", "dt_ms", "contrast_threshold")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"SimParams.{name} must be > 0, got {getattr(self, name)}")
        for f in fields(self):
            if f.name not in positive and not getattr(self, f.name) >= 0:
                raise ValueError(f"SimParams.{f.name} must be >= 0, got {getattr(self, f.name)}")
        if not self.background > 0 or self.background >= 1:
            raise ValueError(f"SimParams.background must lie in (0, 1), got {self.background}")
        if self.duration_ms * 1000 > 2 ** 23:
            raise ValueError("SimParams.duration_ms exceeds the 23-bit timestamps of the .bin format")
        if SENSOR * SENSOR > 2 ** 11:
            raise ValueError("the sensor has more pixels than the event sort keys hold")
        if 2 * self.saccade_dx_px > SENSOR - DIGIT or self.saccade_dy_px > SENSOR - DIGIT:
            raise ValueError(f"the saccade triangle ({2 * self.saccade_dx_px} x {self.saccade_dy_px} px) must fit "
                             f"the {SENSOR - DIGIT} px of room around the digit")
        return self


DEFAULT_PARAMS = SimParams()


# ----------------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------------

def trajectory(params: SimParams = DEFAULT_PARAMS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(t ms, x px, y px), each float64 [n_steps + 1]: the digit's top-left corner on the step grid."""
    n_steps = round(params.duration_ms / params.dt_ms)
    t = np.arange(n_steps + 1) * params.dt_ms
    dx, dy = params.saccade_dx_px, params.saccade_dy_px
    corners = np.array([[0.0, 0.0], [dx, dy], [2 * dx, 0.0], [0.0, 0.0]])
    corners += [((SENSOR - DIGIT) - 2 * dx) / 2, ((SENSOR - DIGIT) - dy) / 2]   # centre the triangle
    phase = np.minimum(t / params.saccade_ms, 3.0)       # after the third saccade: rest at the start
    side = np.minimum(phase.astype(np.int64), 2)
    u = phase - side
    s = u * u * u * (10 - 15 * u + 6 * u * u)            # minimum-jerk position profile
    xy = corners[side] + s[:, None] * (corners[side + 1] - corners[side])
    return t, xy[:, 0], xy[:, 1]


def _gaussian_kernel(sigma: float) -> np.ndarray:
    if sigma <= 0:
        return np.ones(1)
    half = max(1, math.ceil(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma) ** 2)
    return k / k.sum()


def _canvases(digits: np.ndarray, margin: int, params: SimParams) -> np.ndarray:
    """Blurred intensity canvases float32 [B, 28 + 2 margin, 28 + 2 margin] (background outside the digit)."""
    kernel = _gaussian_kernel(params.psf_sigma_px)
    pad = margin + len(kernel) // 2
    p = np.pad(np.asarray(digits, np.float32) / 255.0, ((0, 0), (pad, pad), (pad, pad)))
    size = DIGIT + 2 * margin
    rows = sum(w * p[:, i:i + size, :] for i, w in enumerate(kernel))
    blurred = sum(w * rows[:, :, i:i + size] for i, w in enumerate(kernel))
    b = np.float32(params.background)
    return (b + (1 - b) * blurred).astype(np.float32)


def _thresholds(rngs: Sequence[np.random.Generator], params: SimParams) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel ON and OFF log thresholds float32 [B * 1156] each (the first draws of each recording)."""
    draws = np.stack([rng.standard_normal(2 * N_PIXELS) for rng in rngs]) if len(rngs) else np.zeros((0, 2 * N_PIXELS))
    c = params.contrast_threshold * np.maximum(1 + params.threshold_mismatch * draws, 0.3)
    return c[:, :N_PIXELS].astype(np.float32).reshape(-1), c[:, N_PIXELS:].astype(np.float32).reshape(-1)


def _scene_events(digits: np.ndarray, c_on: np.ndarray, c_off: np.ndarray, params: SimParams):
    """Events of the pixel model without jitter and noise.

    c_on, c_off: float32 [B * 1156] log thresholds.  Returns (recording int64, pixel int64 = y*34 + x,
    polarity uint8, t ms float64), all [n_events], in the canonical order (recording, step, pixel, crossing).
    Only pixels whose view ever differs from the plain background are simulated (the others see a
    constant intensity and cannot fire); the arithmetic is element-wise, so a pixel's events do
    not depend on the rest of the batch.
    """
    t, px, py = trajectory(params)
    dt = params.dt_ms
    # Sensor pixel (X, Y) sees digit coordinate (X - px, Y - py) = canvas coordinate (X + m - px, Y + m - py):
    # bilinear interpolation between canvas cells (Y + iy + {0,1}, X + ix + {0,1}) with weights fy, fx.
    margin = math.ceil(max(np.abs(px).max(), np.abs(py).max())) + 1
    canvas = _canvases(digits, margin, params)
    sx, sy = margin - px, margin - py
    ix, iy = np.floor(sx).astype(np.int64), np.floor(sy).astype(np.int64)
    fx, fy = (sx - ix).astype(np.float32), (sy - iy).astype(np.float32)
    fxy = fx * fy

    def window(y0: int, x0: int) -> np.ndarray:
        return canvas[:, y0:y0 + SENSOR, x0:x0 + SENSOR]

    blocks = sorted(set(zip(iy.tolist(), ix.tolist())))
    varies = canvas != np.float32(params.background)
    active = np.zeros((len(digits), SENSOR, SENSOR), bool)
    for y0, x0 in blocks:
        for a in (0, 1):
            for b in (0, 1):
                active |= varies[:, y0 + a:y0 + a + SENSOR, x0 + b:x0 + b + SENSOR]
    cells = np.flatnonzero(active)               # simulated (recording, pixel) pairs, flat in [B * 1156]
    c_on, c_off = c_on[cells], c_off[cells]

    def corners(y0: int, x0: int) -> tuple[np.ndarray, ...]:
        """Bilinear coefficients of one block: I = a + fx dx + fy dy + fx fy dxy, each float32 [n_cells]."""
        v00, v01 = window(y0, x0).reshape(-1)[cells], window(y0, x0 + 1).reshape(-1)[cells]
        v10, v11 = window(y0 + 1, x0).reshape(-1)[cells], window(y0 + 1, x0 + 1).reshape(-1)[cells]
        return v00, v01 - v00, v10 - v00, (v11 - v10) - (v01 - v00)

    block, coeffs = None, None
    scratch = np.empty(len(cells), np.float32)

    def intensity(step: int, out: np.ndarray) -> np.ndarray:
        nonlocal block, coeffs
        if block != (iy[step], ix[step]):
            block = (iy[step], ix[step])
            coeffs = corners(*block)
        a, ddx, ddy, ddxy = coeffs
        np.multiply(ddx, fx[step], out=out)
        out += a
        np.multiply(ddy, fy[step], out=scratch)
        out += scratch
        np.multiply(ddxy, fxy[step], out=scratch)
        out += scratch
        return out

    previous = intensity(0, np.empty(len(cells), np.float32))
    now = np.empty_like(previous)
    ref = np.log(previous)                        # reference log intensity per simulated pixel
    hi = np.exp(ref + c_on)                       # intensities that trigger ON / OFF
    lo = np.exp(ref - c_off)
    blind_steps = math.ceil(params.refractory_ms / dt - 1e-9)
    releases: dict[int, list[np.ndarray]] = {}
    out_idx, out_pol, out_t = [], [], []
    up, down = np.empty(len(cells), bool), np.empty(len(cells), bool)
    for step in range(1, len(t)):
        intensity(step, now)
        for idx in releases.pop(step, ()):       # end of blind time: reset to the current log intensity
            ref[idx] = np.log(now[idx])
            hi[idx] = np.exp(ref[idx] + c_on[idx])
            lo[idx] = np.exp(ref[idx] - c_off[idx])
        np.greater_equal(now, hi, out=up)
        np.less_equal(now, lo, out=down)
        fired = np.flatnonzero(up | down)
        if len(fired):
            on = up[fired]
            l_now, l_prev, l_ref = np.log(now[fired]), np.log(previous[fired]), ref[fired]
            c = np.where(on, c_on[fired], c_off[fired])
            sign = np.where(on, np.float32(1), np.float32(-1))
            k = np.maximum(np.floor(sign * (l_now - l_ref) / c), 1).astype(np.int64)
            ref[fired] = l_ref + sign * k * c
            if blind_steps:
                hi[fired] = np.inf
                lo[fired] = -np.inf
                releases.setdefault(step + blind_steps, []).append(fired)
            else:
                hi[fired] = np.exp(ref[fired] + c_on[fired])
                lo[fired] = np.exp(ref[fired] - c_off[fired])
            # k events per pixel where the interpolated log intensity crosses l_ref + j * c, j = 1..k
            each = np.repeat(np.arange(len(fired)), k)
            j = np.arange(len(each)) - np.repeat(np.cumsum(k) - k, k) + 1
            level = l_ref[each].astype(np.float64) + sign[each] * j * c[each].astype(np.float64)
            start = l_prev[each].astype(np.float64)
            span = l_now[each].astype(np.float64) - start
            frac = np.divide(level - start, span, out=np.ones_like(level), where=span != 0)
            out_idx.append(fired[each])
            out_pol.append(on[each].astype(np.uint8))
            out_t.append(t[step - 1] + dt * np.clip(frac, 0.0, 1.0))
        previous, now = now, previous
    if not out_idx:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0, np.uint8), np.zeros(0)
    rec, pixel = np.divmod(cells[np.concatenate(out_idx)], N_PIXELS)
    pol, tms = np.concatenate(out_pol), np.concatenate(out_t)
    # emission order is (step, recording, pixel, crossing); a stable sort by recording keeps (step, pixel,
    # crossing) within each recording, an order that does not depend on the rest of the batch
    order = np.argsort(rec.astype(np.uint16) if len(digits) < 2 ** 16 else rec, kind="stable")
    return rec[order], pixel[order], pol[order], tms[order]


def render_batch(digits, rngs: Sequence[np.random.Generator], params: SimParams = DEFAULT_PARAMS) -> list[Events]:
    """Events of one recording per digit: digits uint8 [B, 28, 28], one generator per recording.

    Each recording uses only its own generator (thresholds, then jitter, then noise), so a digit's
    events do not depend on the other digits of the batch.  Timestamps are sorted µs in
    [0, duration); ties are ordered by pixel.
    """
    params.check()
    digits = np.asarray(digits)
    if digits.ndim != 3 or digits.shape[1:] != (DIGIT, DIGIT):
        raise ValueError(f"digits must have shape [B, 28, 28], got {list(digits.shape)}")
    if len(rngs) != len(digits):
        raise ValueError(f"need one generator per digit: {len(digits)} digits, {len(rngs)} generators")
    c_on, c_off = _thresholds(rngs, params)
    rec, pixel, pol, tms = _scene_events(digits, c_on, c_off, params)
    bounds = np.searchsorted(rec, np.arange(len(digits) + 1))
    duration_us = round(params.duration_ms * 1000)
    n_noise_mean = params.noise_rate_hz * N_PIXELS * params.duration_ms / 1000.0
    jitter, noise = [], []
    for r, rng in enumerate(rngs):                   # each recording's own draws, in a fixed order
        jitter.append(rng.normal(0.0, params.jitter_ms * 1000.0, bounds[r + 1] - bounds[r]))
        n_noise = rng.poisson(n_noise_mean)
        noise.append((np.full(n_noise, r), rng.integers(0, N_PIXELS, n_noise), rng.uniform(0.0, duration_us, n_noise),
                      rng.integers(0, 2, n_noise)))
    t_us = tms * 1000.0 + np.concatenate(jitter) if jitter else tms
    noise_rec, noise_pixel, noise_t, noise_pol = (np.concatenate(parts) for parts in zip(*noise)) if noise else (
        np.zeros(0, np.int64),) * 4
    # one sort of packed keys orders the events by (recording, t, pixel, polarity): 1 + 11 + 23 bits below the recording
    all_t = np.clip(np.floor(np.concatenate([t_us, noise_t])), 0, duration_us - 1).astype(np.int64)
    key = np.sort((np.concatenate([rec, noise_rec]).astype(np.int64) << 35) | (all_t << 12)
                  | (np.concatenate([pixel, noise_pixel]).astype(np.int64) << 1) | np.concatenate([pol, noise_pol]))
    y, x = np.divmod((key >> 1) & 0x7FF, SENSOR)
    x, y, polarity, t = x.astype(np.uint8), y.astype(np.uint8), (key & 1).astype(np.uint8), (key >> 12) & 0x7FFFFF
    bounds = np.searchsorted(key >> 35, np.arange(len(digits) + 1))
    return [Events(x[a:b], y[a:b], polarity[a:b], t[a:b]) for a, b in itertools.pairwise(bounds)]


def render_recording(digit, rng: np.random.Generator, params: SimParams = DEFAULT_PARAMS) -> Events:
    """Events of one simulated recording of `digit` (uint8 [28, 28]); see `render_batch`."""
    return render_batch(np.asarray(digit)[None], [rng], params)[0]


def recording_rng(seed: int, source: str, index: int) -> np.random.Generator:
    """The generator of recording `index` (0-based MNIST index) of source set "train" or "test"."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, SOURCE_IDS[source], index])))


# ----------------------------------------------------------------------------------------------
# Statistics of recordings
# ----------------------------------------------------------------------------------------------

def recording_statistics(events: Events, params: SimParams = DEFAULT_PARAMS) -> np.ndarray:
    """int64 [7]: events, ON events, events in saccades 1, 2, 3, pixels with at least one event,
    events within 5 ms of a turning point (t = 0, 100, 200, 300 ms)."""
    t = np.asarray(events.t, np.int64)
    saccade_us = round(params.saccade_ms * 1000)
    per_saccade = np.bincount(np.minimum(t // saccade_us, 2), minlength=3)[:3]
    pixels = np.count_nonzero(np.bincount(np.asarray(events.y, np.int64) * SENSOR + events.x, minlength=N_PIXELS))
    offset = t % saccade_us
    near_turn = int(np.sum(np.minimum(offset, saccade_us - offset) < 5000))
    return np.array([events.n_events, int(np.sum(events.polarity)), *per_saccade, pixels, near_turn], np.int64)


def summarise(stats: np.ndarray, labels: np.ndarray, params: SimParams = DEFAULT_PARAMS) -> dict:
    """The statistics block of SIMULATED.json from per-recording `recording_statistics` rows [n, 7]."""
    stats = np.asarray(stats, np.int64).reshape(-1, 7)
    counts = stats[:, 0]
    total = max(int(counts.sum()), 1)
    if not len(stats):
        return {"recordings": 0}
    by_label = {str(label): round(float(counts[labels == label].mean()), 1)
                for label in range(10) if np.any(labels == label)}
    return {
        "recordings": len(stats),
        "events_per_recording": {
            "mean": round(float(counts.mean()), 1), "std": round(float(counts.std()), 1),
            "min": int(counts.min()), "p5": round(float(np.percentile(counts, 5)), 1),
            "median": float(np.median(counts)), "p95": round(float(np.percentile(counts, 95)), 1),
            "max": int(counts.max()),
        },
        "events_per_recording_by_label": by_label,
        "on_fraction": round(float(stats[:, 1].sum()) / total, 4),
        "saccade_fractions": [round(float(v) / total, 4) for v in stats[:, 2:5].sum(axis=0)],
        "active_pixel_fraction": round(float(stats[:, 5].mean()) / N_PIXELS, 4),
        "fraction_within_5ms_of_turning_points": round(float(stats[:, 6].sum()) / total, 4),
        "expected_noise_events_per_recording": round(params.noise_rate_hz * N_PIXELS * params.duration_ms / 1000, 1),
        "targets": {"events_per_recording_mean": TARGET_MEAN_EVENTS, "on_fraction": "about 0.5",
                    "saccades": "every saccade carries events, concentrated mid-saccade",
                    "source": "N-MNIST, Orchard et al. 2015 (Front. Neurosci. 9:437)"},
    }


# ----------------------------------------------------------------------------------------------
# Writing the dataset
# ----------------------------------------------------------------------------------------------

def recording_path(out_dir, source: str, index: int) -> Path:
    """File of recording `index` (0-based MNIST index) of source "train" or "test" in the layout."""
    number = index + 1
    if source == "test":
        subset = "test_all"
    else:
        subset = "train_all" if number <= TRAIN_POOL else "valid_all"
    return Path(out_dir) / subset / f"{number:05d}.bin"


def _simulate_chunk(out_dir: str, source: str, indices: Sequence[int], digits: np.ndarray, seed: int,
                    params: dict) -> np.ndarray:
    """Simulate and write the recordings of `indices` whose files are missing or damaged (cut short,
    overwritten: rewritten exactly as they were); read the others.

    Returns `recording_statistics` rows int64 [len(indices), 7].  Runs in a worker process.
    """
    sim = SimParams(**params)
    paths = [recording_path(out_dir, source, i) for i in indices]
    stats = np.zeros((len(indices), 7), np.int64)
    redo = []
    for k, path in enumerate(paths):
        if path.is_file():
            try:
                stats[k] = recording_statistics(read_bin(path, simulated=True), sim)
                continue
            except UserError:           # damaged: a recording depends only on (seed, set, index), so rewrite it
                pass
        redo.append(k)
    if redo:
        rngs = [recording_rng(seed, source, indices[k]) for k in redo]
        rendered = render_batch(digits[redo], rngs, sim)
        with ThreadPoolExecutor(WRITE_THREADS) as pool:        # fsync of one file overlaps the others
            list(pool.map(write_bin, [paths[k] for k in redo], rendered))
        for k, events in zip(redo, rendered):
            stats[k] = recording_statistics(events, sim)
    return stats


def _absent_files(out: Path, train_count: int, test_count: int) -> list:
    """The recordings and labels.csv files of a finished set that are not there (deleted since)."""
    wanted = [out / subset / "labels.csv" for subset in SUBSETS]
    wanted += [recording_path(out, source, i) for source, n in (("train", train_count), ("test", test_count))
               for i in range(n)]
    return [path for path in wanted if not path.is_file()]


def _identity(seed: int, train_count: int, test_count: int, params: SimParams) -> dict:
    return {"simulated": True, "generator": GENERATOR, "version": VERSION, "seed": seed,
            "train_count": train_count, "test_count": test_count, "params": params.as_dict()}


def _read_marker(path: Path) -> dict | None:
    """The marker at `path` when it is one of this generator's, else None."""
    marker = read_json_file(path)
    return marker if isinstance(marker, dict) and marker.get("generator") == GENERATOR else None


def _same_run(marker: dict, identity: dict) -> bool:
    return all(marker.get(key) == value for key, value in identity.items())


def _describe(marker: dict) -> str:
    return (f"seed {marker.get('seed')}, train_count {marker.get('train_count')}, "
            f"test_count {marker.get('test_count')}, version {marker.get('version')}")


def _folder_state(out: Path, identity: dict, overwrite: bool) -> str:
    """What to do with `out` (read-only): "new", "resume", "replace" or "done"; refusals raise UserError."""
    if out.exists() and not out.is_dir():
        raise UserError(f"The output path {out} is a file, not a folder. Pass --out with a folder path.")
    done, running = _read_marker(out / MARKER), _read_marker(out / IN_PROGRESS)
    marker = done if done is not None else running
    if marker is None:
        if out.is_dir() and any(out.iterdir()):
            raise UserError(
                f"The folder {out} is not empty and carries no {MARKER} or in-progress marker of "
                f"simulate-nmnist, so it may hold other data (for example the real N-MNIST); nothing was "
                f"changed. Choose an empty or new folder with --out.")
        return "new"
    if overwrite:
        return "replace"
    if not _same_run(marker, identity):
        raise UserError(
            f"{out} already holds a simulated N-MNIST made with other settings ({_describe(marker)}); "
            f"asked for {_describe(identity)}. Add --overwrite to replace it, or choose another --out.")
    return "done" if done is not None else "resume"


def _start_folder(out: Path, identity: dict, state: str) -> None:
    """Mark `out` as in progress (before any recording), clear it for "replace", create the subsets."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / MARKER).unlink(missing_ok=True)          # from here on the folder does not look complete
        atomic_write_json(out / IN_PROGRESS, identity)
        for subset in SUBSETS:
            if state == "replace":
                shutil.rmtree(out / subset, ignore_errors=True)
            (out / subset).mkdir(exist_ok=True)
            for stale in (out / subset).glob(".*.tmp"):   # left by an interrupted atomic write
                stale.unlink(missing_ok=True)
    except OSError as exc:
        raise UserError(f"Cannot write to the output folder {out}: {exc.strerror or exc}. Choose a writable "
                        f"folder with --out.") from exc


def _check_disk(out: Path, n_files: int) -> None:
    need = n_files * (TARGET_MEAN_EVENTS * 5 + 4096) * 1.2
    existing = next(p for p in (out, *out.parents) if p.exists())
    free = shutil.disk_usage(existing).free
    if need > free:
        raise UserError(f"Not enough free disk space in {out}: the simulated N-MNIST needs about "
                        f"{need / 1e9:.1f} GB, {free / 1e9:.1f} GB are free. Free some space or choose "
                        f"another --out.")


def _labels_csv(numbers: Sequence[int], labels: np.ndarray) -> str:
    return "file,label\n" + "".join(f"{n:05d}.bin,{int(label)}\n" for n, label in zip(numbers, labels))


def _check_count(name: str, value, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value <= maximum:
        raise UserError(f"{name} must be a whole number from 0 to {maximum} (MNIST has {maximum} such "
                        f"digits), got {value!r}. Pass a value in that range.")
    return int(value)


def simulate_nmnist(out_dir=None, train_count: int = N_TRAIN_FILE, test_count: int = N_TEST_FILE, seed: int = 0,
                    data_dir=None, overwrite: bool = False, log: Callable[[str], None] = print, *,
                    params: SimParams = DEFAULT_PARAMS, jobs: int | None = None) -> Path:
    """Write a simulated N-MNIST of the first `train_count` training and `test_count` test digits.

    out_dir: the dataset folder (default datasets/nmnist_simulated); data_dir: where mnist.npz is.
    A re-run with the same arguments resumes (existing recordings are kept, damaged ones rewritten) or,
    when complete, does nothing (files deleted since are rewritten, exactly as they were); other
    arguments are refused unless `overwrite`.  `jobs` worker processes simulate
    (default: one per CPU core, at most 8).  Returns the folder.
    """
    train_count = _check_count("The training count", train_count, N_TRAIN_FILE)
    test_count = _check_count("The test count", test_count, N_TEST_FILE)
    if train_count + test_count == 0:
        raise UserError("Nothing to simulate: the training and test counts are both 0. Ask for at least one "
                        "recording.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2 ** 63:
        raise UserError(f"The seed must be a whole number from 0 to {2 ** 63 - 1}, got {seed!r}.")
    jobs = min(8, os.cpu_count() or 1) if jobs is None else jobs
    if isinstance(jobs, bool) or not isinstance(jobs, (int, np.integer)) or jobs < 1:
        raise UserError(f"The number of worker processes must be a whole number >= 1, got {jobs!r}.")
    try:
        params.check()
    except ValueError as exc:
        raise UserError(f"Invalid simulation parameters: {exc}.") from exc
    out = Path(out_dir if out_dir is not None else default_data_dir() / SIMULATED_FOLDER).expanduser().absolute()
    identity = _identity(int(seed), train_count, test_count, params)
    state = _folder_state(out, identity, overwrite)
    absent = _absent_files(out, train_count, test_count) if state == "done" else []
    if state == "done" and not absent:
        log(f"{out} already holds this simulated N-MNIST (seed {seed}, {train_count} training + {test_count} "
            f"test recordings); nothing to do.")
        return out
    mnist = load_image_dataset("mnist", data_dir)
    todo = [(source, i) for source, n in (("train", train_count), ("test", test_count)) for i in range(n)]
    missing = len(todo) if state not in ("resume", "done") else sum(
        not recording_path(out, source, i).is_file() for source, i in todo)
    _check_disk(out, missing)
    if state == "done":
        log(f"{out} holds this simulated N-MNIST but lacks {len(absent)} of its files (e.g. {absent[0]}): "
            f"rewriting them; the others are kept.")
    elif state == "resume":
        log(f"Resuming the interrupted simulation in {out}: existing recordings are kept.")
    elif state == "replace":
        log(f"Replacing the simulated N-MNIST in {out} (--overwrite).")
    _start_folder(out, identity, state)
    chunks = [(source, list(range(start, min(start + CHUNK, n))))
              for source, n in (("train", train_count), ("test", test_count)) for start in range(0, n, CHUNK)]
    log(f"Simulating N-MNIST into {out}: {train_count} training + {test_count} test recordings "
        f"({missing} to write), seed {seed}, {jobs} worker process(es).")
    images = {"train": mnist.x_train, "test": mnist.x_test}
    results: dict[int, np.ndarray] = {}
    bar = progress_bar(len(todo), "simulate N-MNIST", "rec")
    try:
        if jobs == 1 or len(chunks) == 1:
            for c, (source, indices) in enumerate(chunks):
                results[c] = _simulate_chunk(str(out), source, indices, images[source][indices], int(seed),
                                             params.as_dict())
                bar.update(len(indices))
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor, as_completed

            # spawn: safe even when the caller has threads (e.g. TensorFlow) running
            with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
                futures = {pool.submit(_simulate_chunk, str(out), source, indices, images[source][indices],
                                       int(seed), params.as_dict()): c
                           for c, (source, indices) in enumerate(chunks)}
                for future in as_completed(futures):
                    results[futures[future]] = future.result()
                    bar.update(len(chunks[futures[future]][1]))
    finally:
        bar.close()
    stats = np.concatenate([results[c] for c in range(len(chunks))])
    labels = np.concatenate([mnist.y_train[:train_count], mnist.y_test[:test_count]])
    n_train_pool = min(train_count, TRAIN_POOL)
    atomic_write_text(out / "train_all" / "labels.csv",
                      _labels_csv(range(1, n_train_pool + 1), mnist.y_train[:n_train_pool]))
    atomic_write_text(out / "valid_all" / "labels.csv",
                      _labels_csv(range(TRAIN_POOL + 1, train_count + 1), mnist.y_train[TRAIN_POOL:train_count]))
    atomic_write_text(out / "test_all" / "labels.csv",
                      _labels_csv(range(1, test_count + 1), mnist.y_test[:test_count]))
    summary = summarise(stats, labels, params)
    marker = dict(identity, statistics=summary,
                  note="Simulated from MNIST digits with an event-camera model (lsm_core.data.nmnist_sim); these are "
                       "not real N-MNIST recordings, and results on them are not N-MNIST results.")
    atomic_write_json(out / MARKER, marker)
    (out / IN_PROGRESS).unlink(missing_ok=True)
    ev = summary["events_per_recording"]
    log(f"Wrote the simulated N-MNIST to {out}: {ev['mean']:.0f} ± {ev['std']:.0f} events per recording "
        f"(target about {TARGET_MEAN_EVENTS}), ON fraction {summary['on_fraction']:.3f}, saccade fractions "
        f"{summary['saccade_fractions']}, active pixels {summary['active_pixel_fraction']:.3f}.")
    return out


# ----------------------------------------------------------------------------------------------
# Command line: python -m lsm_core datasets simulate-nmnist
# ----------------------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lsm_core datasets simulate-nmnist",
        description="Write a simulated N-MNIST (same .bin format and layout as the real one, 300 ms per "
                    "recording) from the MNIST digits with an event-camera model. The folder is marked "
                    "as simulated (SIMULATED.json).")
    parser.add_argument("--out", default=None, metavar="DIR", help="output folder (default: nmnist_simulated/ in the data folder: ./datasets, or $LSM_CORE_DATA_DIR)")
    parser.add_argument("--train-count", default=str(N_TRAIN_FILE), metavar="N",
                        help=f"first N training digits (default: {N_TRAIN_FILE})")
    parser.add_argument("--test-count", default=str(N_TEST_FILE), metavar="N",
                        help=f"first N test digits (default: {N_TEST_FILE})")
    parser.add_argument("--seed", default="0", metavar="S", help="random seed (default: 0)")
    parser.add_argument("--data-dir", default=None, metavar="DIR",
                        help="folder holding mnist.npz (default: ./datasets, or $LSM_CORE_DATA_DIR)")
    parser.add_argument("--jobs", default=None, metavar="N",
                        help="worker processes (default: one per CPU core, at most 8)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a simulated N-MNIST made with other settings")
    return parser


def _whole_number(option: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UserError(f"{option} takes a whole number, got {text!r}. For example: {option} 1000.") from None


def simulate_nmnist_command(argv: list[str]) -> int:
    """Run `python -m lsm_core datasets simulate-nmnist` with `argv`; returns the exit status."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:           # --help (0) or a usage error (2)
        return int(exc.code or 0)
    simulate_nmnist(args.out, _whole_number("--train-count", args.train_count),
                    _whole_number("--test-count", args.test_count), _whole_number("--seed", args.seed),
                    args.data_dir, args.overwrite,
                    jobs=None if args.jobs is None else _whole_number("--jobs", args.jobs))
    return 0
