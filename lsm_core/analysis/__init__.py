"""Analysis: reading a liquid out and judging it.

- `readout`: the linear readout trained on spike counts.
- `report`: results of run folders, alone or as group statistics beside the paper's.
- `branching`: the branching factor of stored spike rasters.
- `kernel_quality`: kernel quality (ranks of the liquid's states).
- `plots`: the figures of a run folder.
- `paper_results`: the paper's published numbers, as data.
"""
