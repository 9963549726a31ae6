"""What a run reads (docs/model.md#the-protocol): the whole splits of its dataset, images or events, fetched
first where a missing dataset can be fetched."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lsm_core.data import events as ev
from lsm_core.data.encoding import image_splits
from lsm_core.data.fetch import fetch_dataset
from lsm_core.data.images import dataset_path, dataset_spec, load_image_dataset
from lsm_core.errors import UserError
from lsm_core.places import data_dir as default_data_dir


@dataclass(frozen=True, eq=False)
class RunData:
    """What a run reads: the whole splits {"train" (the 50000-sample training pool), "valid", "test"}
    as ImageSplit or EventSplit, notes for the run log, and a description for params.json."""

    splits: dict
    notes: list = field(default_factory=list)
    info: dict = field(default_factory=dict)


def load_run_data(name: str, data_dir=None, simulated: bool = False,
                  log: Callable[[str], None] = print) -> RunData:
    """The splits of dataset `name` for a run, fetching a missing dataset first where that can work
    (Fashion-MNIST from Debian's folder or a download, N-MNIST through tonic); otherwise UserError
    naming the command that provides it.  `simulated` selects the simulated N-MNIST (never fetched)."""
    spec = dataset_spec(name)
    if simulated and spec.mode != "event":
        raise UserError(f"Simulated data exists only for N-MNIST, not for {spec.title or name}.")
    folder = Path(data_dir) if data_dir is not None else default_data_dir()
    if spec.mode == "image":
        if name != "mnist" and not dataset_path(name, data_dir).is_file():
            log(f"{dataset_path(name, data_dir)} is missing: fetching it (`python -m lsm_core datasets fetch {name}`).")
            fetch_dataset(name, data_dir, log=log)
        data = load_image_dataset(name, data_dir)
        return RunData(image_splits(data), [], {"name": name, "file": str(data.path), "simulated": False})
    if not simulated and ev.find_event_layout(folder, simulated=False) is None:
        log(f"No N-MNIST recordings under {folder}: fetching them (`python -m lsm_core datasets fetch nmnist`).")
        fetch_dataset(name, data_dir, log=log)
    splits, notes = ev.load_event_splits(folder, simulated)
    layout = ev.find_event_layout(folder, simulated)
    info = {"name": name, "folder": str(layout.root), "layout": layout.kind, "simulated": simulated,
            "recordings": {split: len(part) for split, part in splits.items()}, "notes": notes}
    if simulated:
        info["simulated_marker"] = ev.read_simulated_marker(layout.root)
    return RunData(splits, notes, info)
