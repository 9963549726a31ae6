"""Every plot writes a PNG and leaves no figure open; plots.py does not need TensorFlow."""
import subprocess
import sys

import numpy as np
import pytest

from lsm_core.analysis import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _no_open_figures():
    import matplotlib.pyplot as plt
    yield
    assert plt.get_fignums() == []


def _is_png(path):
    data = path.read_bytes()
    return len(data) > 1000 and data[:8] == PNG_MAGIC


def _history(n=40):
    rng = np.random.default_rng(0)
    acc = np.clip(np.linspace(0.5, 0.95, n) + rng.normal(0, 0.01, (3, n)), 0, 1)
    return [{"epoch": e + 1, "train_loss": 2.0 - e * 0.01, "valid_loss": 2.0 - e * 0.01,
             "train_acc": acc[0, e], "valid_acc": acc[1, e], "test_acc": acc[2, e]} for e in range(n)]


def test_plot_accuracy(tmp_path):
    out = plots.plot_accuracy(_history(), tmp_path / "acc.png", title="LSM on mnist")
    assert _is_png(out)
    assert _is_png(plots.plot_accuracy(_history(1), tmp_path / "one.png"))
    assert _is_png(plots.plot_accuracy([], tmp_path / "none.png"))


def test_plot_raster(tmp_path):
    rng = np.random.default_rng(1)
    spikes = rng.random((250, 120)) < 0.03
    out = plots.plot_raster(spikes, tmp_path / "sub" / "raster.png", n_exc=80, n_inh=20, title="sample 0")
    assert _is_png(out)
    assert _is_png(plots.plot_raster(np.zeros((10, 5), bool), tmp_path / "empty.png", 4, 1))
    with pytest.raises(ValueError):
        plots.plot_raster(np.zeros(10, bool), tmp_path / "bad.png", 4, 1)


def test_plot_weight_histograms(tmp_path):
    rng = np.random.default_rng(2)
    before = {"E→res": np.full(500, 3.0), "I→res": np.full(100, -3.0),
              "input→res": rng.choice([-3.0, 3.0], 800)}
    after = {"E→res": rng.uniform(0, 3, 500), "I→res": rng.uniform(-3, 0, 100),
             "input→res": rng.uniform(-3, 3, 800)}
    assert _is_png(plots.plot_weight_histograms(before, after, tmp_path / "w.png"))
    assert _is_png(plots.plot_weight_histograms({"E→res": np.ones(3)}, {"E→res": np.array([])},
                                                tmp_path / "w2.png"))


def test_plot_trace(tmp_path):
    t = np.linspace(0, 1, 250)
    assert _is_png(plots.plot_trace(0.15 * np.exp(-t), tmp_path / "a.png", "astrocyte A", "trace"))
    assert _is_png(plots.plot_trace(np.stack([t, t ** 2, t ** 3]), tmp_path / "b.png", "A", "batch"))
    with pytest.raises(ValueError):
        plots.plot_trace(np.zeros((2, 2, 2)), tmp_path / "c.png", "A", "bad")


def test_plots_module_does_not_import_tensorflow():
    code = "import sys, lsm_core.analysis.plots; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
