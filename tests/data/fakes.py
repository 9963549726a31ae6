"""Stand-ins for the network and for datasets on disk, shared by the data tests."""
import urllib.error

import numpy as np

from lsm_core.data import events as ev


def offline(url, timeout=None):
    """A download that fails as it does without a network."""
    raise urllib.error.URLError("Name or service not known")


def write_simulated(data_dir, n_train=12, n_test=3):
    """A tiny simulated N-MNIST folder: one event per recording, labels by number."""
    rng = np.random.default_rng(1)
    root = data_dir / "nmnist_simulated"
    for folder, numbers in (("train_all", range(1, n_train + 1)), ("test_all", range(1, n_test + 1))):
        (root / folder).mkdir(parents=True)
        for number in numbers:
            ev.write_bin(root / folder / f"{number:05d}.bin", ev.make_events([1], [2], [1], [rng.integers(0, 3e5)]))
        (root / folder / "labels.csv").write_text("file,label\n" + "".join(f"{n:05d}.bin,{n % 10}\n" for n in numbers))
    (root / "SIMULATED.json").write_text('{"seed": 1}')
