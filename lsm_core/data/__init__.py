"""Data: the datasets a liquid reads and how they become input spikes.

- `images`: MNIST and Fashion-MNIST files: loading and checking.
- `encoding`: images as per-millisecond spike probabilities; the standard split.
- `events`: N-MNIST event recordings: the `.bin` format, 1 ms bins, the splits.
- `idx`: the IDX array format of the MNIST family.
- `fetch`: obtaining each dataset (download, build, verify).
- `nmnist_sim`: simulated N-MNIST, for machines without the recordings.
- `run_data`: the splits a run reads, fetched first where possible.
"""
