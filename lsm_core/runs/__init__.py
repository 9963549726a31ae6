"""Runs: the benchmark protocol and the folders it writes.

- `pipeline`: the protocol (init phase, spike counts in blocks, readout, outputs) and its resume.
- `folder`: the run folder `train_data/ver_<VERSION>/`: identity, manifest, checked reads and writes.
- `checks`: what each file of a run folder must hold.
- `lock`: one writer per run folder.
- `sweep`: sweep files: grids of runs, expanded and recorded.
- `workers`: running a sweep's runs on local CPUs/GPUs, workers or Slurm.
"""
