"""Analysis: reading a liquid out and judging it.

- `readout`: the paper's linear readout, trained on spike counts with Adadelta.
- `ridge`: the closed-form ridge readout.
- `readouts`: readouts added to a finished run, side by side (the `readout` command).
- `report`: results of run folders, alone or as group statistics beside the paper's.
- `branching`: the branching factor of stored spike rasters.
- `kernel_quality`: kernel quality (ranks of the liquid's states).
- `plots`: the figures of a run folder.
- `paper_results`: the paper's published numbers, as data.
"""
