"""lsm_core.data.run_data: the splits a run reads, fetched first where possible."""
from __future__ import annotations


import pytest

from lsm_core.data import fetch, run_data
from lsm_core.errors import UserError
from tests.data.fakes import offline, write_simulated





def test_load_run_data_fetches_what_can_be_fetched(tmp_path, fake_fmnist, fake_checksums, monkeypatch):
    monkeypatch.setattr(fetch, "DEBIAN_FMNIST_DIR", fake_fmnist[0])
    messages = []
    data = run_data.load_run_data("fmnist", tmp_path, log=messages.append)
    assert "fetching it" in messages[0] and (tmp_path / "fmnist.npz").exists()
    assert len(data.splits["train"]) == 50000 and data.info["simulated"] is False
    downloads = []
    monkeypatch.setattr(fetch, "_tonic_download", lambda save_to, log: downloads.append(save_to) or offline(""))
    with pytest.raises(UserError, match="tonic failed"):
        run_data.load_run_data("nmnist", tmp_path, log=messages.append)
    with pytest.raises(UserError, match="datasets simulate-nmnist"):       # simulated data is never fetched
        run_data.load_run_data("nmnist", tmp_path, simulated=True, log=messages.append)
    assert len(downloads) == 1
    write_simulated(tmp_path)
    data = run_data.load_run_data("nmnist", tmp_path, simulated=True)
    assert data.info["simulated_marker"] == {"seed": 1} and data.info["recordings"] == {"train": 10, "valid": 2,
                                                                                         "test": 3}
    assert all(split.simulated for split in data.splits.values()) and "SIMULATED" in data.notes[0]
    with pytest.raises(UserError, match="only for N-MNIST"):
        run_data.load_run_data("mnist", tmp_path, simulated=True)
