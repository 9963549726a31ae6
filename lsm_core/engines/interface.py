"""What both simulation engines share, with no TensorFlow and no numba: the parameters a simulation may
override, the check of its inputs, the rows a batch learns in and records, and the result types.

`xla.py` (the XLA engine) and `event_driven.py` (the event-driven engine) both import this module, so
that neither imports the other; `simulator.py` imports the one a caller chose, lazily.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, NamedTuple, Optional

import numpy as np

from lsm_core.config import PAPER

if TYPE_CHECKING:
    from lsm_core.model.network import Network

RULES = ("static", "stdp", "nalsm", "apstdp")
PHASES = ("sample", "init")


@dataclass(frozen=True)
class SimParams:
    """Constants that `simulate(params=...)` may override, by the names of
    docs/model.md#simulating-from-python."""

    lr: float = PAPER.plasticity.lr
    lr_decay: float = PAPER.plasticity.lr_decay
    w_max: float = PAPER.plasticity.w_max
    input_current: float = PAPER.neuron.input_current
    astro_w: Optional[float] = None
    astro_tau: float = PAPER.plasticity.astro_tau
    astro_bias_offset: float = PAPER.plasticity.astro_bias_offset
    rate_threshold: Optional[float] = None
    rate_range: Optional[float] = None
    calcium_tau: float = PAPER.plasticity.calcium_tau
    astro_mask: Optional[tuple] = None      # per neuron: +1 / -1 / 0, see `astro_mask_of`; None: all

    @classmethod
    def from_overrides(cls, overrides: Optional[dict]) -> "SimParams":
        overrides = dict(overrides or {})
        unknown = sorted(set(overrides) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown simulation parameter(s) {unknown}; known: "
                             f"{sorted(cls.__dataclass_fields__)}")
        if overrides.get("astro_mask") is not None:         # an array -> a hashable tuple (params are cache keys)
            overrides["astro_mask"] = tuple(float(v) for v in np.asarray(overrides["astro_mask"]).reshape(-1))
        return replace(cls(), **overrides)


def check_inputs(inputs, steps, n_input: int):
    """Validate inputs; returns (inputs as uint8 events or float32 probabilities, steps, event_mode)."""
    inputs = np.asarray(inputs)
    event_mode = inputs.ndim == 3
    if inputs.shape[-1] != n_input:
        raise ValueError(f"inputs have {inputs.shape[-1]} input channels, the liquid has {n_input}")
    if event_mode:
        steps = inputs.shape[1] if steps is None else int(steps)
        if steps > inputs.shape[1]:
            raise ValueError(f"steps={steps} but only {inputs.shape[1]} ms of input spikes were given")
        return inputs[:, :steps].astype(np.uint8, copy=False), steps, True
    if steps is None:
        raise ValueError("image mode needs steps= (the duration in ms)")
    return inputs.astype(np.float32, copy=False), int(steps), False


class StreamCarry(NamedTuple):
    """What the init phase carries from snapshot to snapshot (and from call to call), batch 1:
    weights float32 [1, n_syn] (synapse-list order), trace and calcium float32 [1, N]."""

    weights: np.ndarray
    trace: np.ndarray
    calcium: np.ndarray


class PlasticRun(NamedTuple):
    """Result of `PlasticSimulator.run`: counts int32 [rows, N_res]; spikes bool [recorded rows, T, N];
    astro float32 [rows, T] (A after each step); and the final `weights`
    [B, n_syn], `trace` and `calcium` [B, N] -- B = 1 in the init phase; all three None from a sample-phase
    simulator built with `final_state=False` (at 8000 neurons and batch 50 the weights alone are 224 MB
    a batch, which the spike counts do not need)."""

    counts: np.ndarray
    spikes: np.ndarray
    astro: np.ndarray
    weights: np.ndarray
    trace: np.ndarray
    calcium: np.ndarray


def check_plastic_settings(rule: str, phase: str, params: SimParams) -> None:
    """Refuse a plastic simulator without a plastic rule, a phase or the rule's required scalars."""
    if rule not in ("stdp", "nalsm", "apstdp") or phase not in PHASES:
        raise ValueError(f"PlasticSimulator needs a plastic rule and a phase, got {rule!r}, {phase!r}")
    if rule == "nalsm" and params.astro_w is None:
        raise ValueError('rule "nalsm" needs params["astro_w"] (ASTRO_W_SCALING)')
    if rule == "apstdp" and (params.rate_threshold is None or params.rate_range is None):
        raise ValueError('rule "apstdp" needs params["rate_threshold"] and params["rate_range"]')


def learning_rows(rows: int, reference_batch_quirk: bool) -> np.ndarray:
    """float32 [rows]: 1 for the rows of a sample-phase batch that learn, 0 for those that keep their
    starting weights (the reference batch quirk: row 0 only).  Computed for the whole batch (and sliced
    with its rows), so that a batch split over devices learns in exactly the rows of the unsplit batch.
    """
    learns = np.ones(rows, np.float32)
    if reference_batch_quirk:
        learns[1:] = 0.0
    return learns


def record_rows_of(record_rows, record: bool, rows: int) -> np.ndarray:
    """The rows whose spikes a plastic run keeps: `record_rows` if given, else all rows or none."""
    if record_rows is None:
        return np.arange(rows) if record else np.zeros(0, np.int64)
    record_rows = np.asarray(record_rows, np.int64).reshape(-1)
    if len(record_rows) and (record_rows.min() < 0 or record_rows.max() >= rows):
        raise ValueError(f"record rows must lie in [0, {rows}), got {record_rows.tolist()}")
    return record_rows


def default_astro_mask(n_res: int, n_input: int) -> np.ndarray:
    """Every neuron feeds the astrocyte: +1 for each reservoir neuron, -1 for each input, float32 [N]."""
    return np.concatenate([np.ones(n_res, np.float32), -np.ones(n_input, np.float32)])


def astro_mask_of(params: SimParams, n_res: int, n_input: int) -> np.ndarray:
    """The astrocyte's weights on the neurons' spikes, float32 [N] (docs/model.md#the-astrocyte): its drive
    at a step is sum(mask * S).  +1 for a reservoir neuron that feeds it, -1 for an input neuron that feeds
    it, 0 for one that does not; `params.astro_mask` None: every neuron feeds it."""
    if params.astro_mask is None:
        return default_astro_mask(n_res, n_input)
    mask = np.asarray(params.astro_mask, np.float32)
    if mask.shape != (n_res + n_input,):
        raise ValueError(f"astro_mask must have one value per neuron, [N] = [{n_res + n_input}], got "
                         f"{list(mask.shape)}")
    if np.any(mask[:n_res] < 0) or np.any(mask[:n_res] > 1) or np.any(mask[n_res:] > 0) \
            or np.any(mask[n_res:] < -1) or not np.all(np.isin(mask, (-1.0, 0.0, 1.0))):
        raise ValueError("astro_mask holds +1 or 0 for reservoir neurons and -1 or 0 for inputs")
    return mask


def synapse_weights(net: Network, weight_scale: Optional[float]) -> np.ndarray:
    """Weights of the synapse list, float32 [n_syn]: the network's, or sign * weight_scale."""
    syn = net.synapses()
    if weight_scale is None:
        return net.W[syn.post, syn.pre].astype(np.float32)
    return (np.sign(syn.sign) * np.float32(weight_scale)).astype(np.float32)
