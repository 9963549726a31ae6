"""Where datasets, liquids and run folders go when no option names them: option, environment, current folder."""

from lsm_core import places
from lsm_core.data.images import dataset_path
from lsm_core.model.network import network_path
from lsm_core.runs.folder import run_folder_path
from lsm_core.runs.sweep import SweepPaths


def test_defaults_are_the_current_folder(tmp_path, monkeypatch):
    for variable in places.ENVIRONMENT.values():
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.chdir(tmp_path)
    assert dataset_path("mnist") == tmp_path / "datasets" / "mnist.npz"
    assert network_path(3) == tmp_path / "networks" / "Network_3.npz"
    assert run_folder_path(7) == tmp_path / "train_data" / "ver_7"
    assert SweepPaths().root == tmp_path / "train_data"


def test_environment_variables_override_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LSM_CORE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LSM_CORE_NETWORKS_DIR", str(tmp_path / "liquids"))
    monkeypatch.setenv("LSM_CORE_OUTPUT_ROOT", str(tmp_path / "runs"))
    assert dataset_path("mnist") == tmp_path / "data" / "mnist.npz"
    assert network_path(3) == tmp_path / "liquids" / "Network_3.npz"
    assert run_folder_path(7) == tmp_path / "runs" / "ver_7"
    # and options override both
    assert dataset_path("mnist", tmp_path / "other") == tmp_path / "other" / "mnist.npz"
    assert network_path(3, tmp_path / "other") == tmp_path / "other" / "Network_3.npz"
    assert run_folder_path(7, tmp_path / "other") == tmp_path / "other" / "ver_7"


def test_the_help_texts_say_the_rule():
    from lsm_core.cli.scripts import build_parser

    text = " ".join(build_parser("NALSM", "mnist").format_help().split())
    for folder, variable in places.ENVIRONMENT.items():
        assert f"./{folder}, or ${variable}" in text
