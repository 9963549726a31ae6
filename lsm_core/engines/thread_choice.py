"""Which is faster right now for one stream of samples: one thread, or every step's work on several?

The init phase is one stream (batch 1).  On several threads, each millisecond ends at a barrier where
the threads wait for each other: on a quiet machine that pays, but when another program shares the
cores, a thread that loses its core for a time slice (milliseconds) stops the others at every step, and
two threads have been measured 3.5-5.5 times slower than one.  Which case holds depends on the machine
and changes while a run goes on, so it is measured, not assumed: the stream is simulated in slices of
about `SLICE_S` seconds, each timed, on the way that has been faster so far, and now and then a slice on
the other way checks whether that still holds (after 4 slices, then 8, 16, ... up to 64 while it does).
Both ways compute the same numbers, so the choice changes only the time.

A probe is a quarter of a slice, and at most one in `MAX_PROBE_EVERY` slices runs the slower way: even
when it is five times slower, that costs about 0.3 % of the stream's time.  A probe that wins by chance is
undone after one slice: the way in use is timed at every slice.
"""
from __future__ import annotations

import logging

SLICE_S = 0.05             # wall time a slice aims at [s]: long against timer and launch costs, short
                           # enough to follow a machine whose load changes
PROBE_FRACTION = 0.25      # a slice on the other way (a probe) is this fraction of a slice: cheap when it loses
FIRST_PROBE_AFTER = 4      # slices on the chosen way before the other is tried again (doubling while it loses)
MAX_PROBE_EVERY = 64
SMOOTHING = 0.5            # weight of the newest slice in the running time per step of the way in use

log = logging.getLogger(__name__)


class ThreadChoice:
    """Chooses, slice by slice, whether a stream runs threaded; remembers what it measured.

    Parameters
    ----------
    threaded_possible : bool
        Whether a threaded way exists at all (several threads and a quick thread launch); without it
        every slice runs on one thread and covers the whole remaining stream.

    Use `next_slice(remaining, steps_per_sample)` for (threaded, samples) and `record(threaded, steps,
    seconds)` after each slice.
    """

    def __init__(self, threaded_possible: bool):
        self.threaded_possible = threaded_possible
        self.seconds_per_step = {True: None, False: None}
        self.current = threaded_possible
        self.probe_every = FIRST_PROBE_AFTER
        self.slices_since_probe = 0
        self._probing = False

    def next_slice(self, remaining: int, steps_per_sample: int) -> tuple[bool, int]:
        """(threaded, samples) for the next slice of a stream with `remaining` samples of
        `steps_per_sample` ms each."""
        if not self.threaded_possible:
            return False, remaining
        unmeasured = [way for way in (True, False) if self.seconds_per_step[way] is None]
        if unmeasured:
            way = unmeasured[0]
        elif self.slices_since_probe >= self.probe_every:
            way = not self.current
        else:
            way = self.current
        self._probing = way != self.current
        per_step = self.seconds_per_step[way] or self.seconds_per_step[not way]
        if per_step is None:        # nothing measured yet: one sample tells the speed
            samples = 1
        else:
            seconds = SLICE_S * (PROBE_FRACTION if self._probing else 1.0)
            samples = int(seconds / max(per_step * steps_per_sample, 1e-9))
        return way, max(1, min(remaining, samples))

    def record(self, threaded: bool, steps: int, seconds: float) -> None:
        """Book a slice of `steps` ms simulated `threaded` or not in `seconds` of wall time."""
        if not self.threaded_possible or steps <= 0:
            return
        measured = seconds / steps
        before = self.seconds_per_step[threaded]
        if before is None or threaded != self.current:
            self.seconds_per_step[threaded] = measured      # a probe: its newest figure
        else:
            self.seconds_per_step[threaded] = SMOOTHING * measured + (1.0 - SMOOTHING) * before
        if self._probing:
            self.slices_since_probe = 0
            self._probing = False
        else:
            self.slices_since_probe += 1
        other = self.seconds_per_step[not self.current]
        mine = self.seconds_per_step[self.current]
        if other is not None and mine is not None and other < mine:
            self.current = not self.current
            self.probe_every = FIRST_PROBE_AFTER
            log.debug("stream now %s (%.1f vs %.1f us per step)", "threaded" if self.current else "on one thread",
                      1e6 * other, 1e6 * mine)
        elif threaded != self.current:              # the probe lost: ask again later
            self.probe_every = min(2 * self.probe_every, MAX_PROBE_EVERY)
