"""Spies on the simulators for tests: which batches a run or a tool simulated (on either engine)."""
from lsm_core.engines.event_driven import EventLiquidSimulator
from lsm_core.engines.xla import LiquidSimulator


def count_simulated_batches(monkeypatch) -> list:
    """A list that receives the number of rows of every fixed-weight batch simulated from now on."""
    calls = []
    for simulator in (LiquidSimulator, EventLiquidSimulator):
        def counting(self, inputs, keys, steps=None, record_rows=(), original=simulator.run):
            calls.append(len(inputs))
            return original(self, inputs, keys, steps=steps, record_rows=record_rows)

        monkeypatch.setattr(simulator, "run", counting)
    return calls
