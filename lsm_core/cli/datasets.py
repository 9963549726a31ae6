"""`python -m lsm_core datasets ...`: fetch, build, verify and simulate datasets (the command line only;
the data layer is lsm_core/data/, the simulated N-MNIST data/nmnist_sim.py)."""
from __future__ import annotations

import argparse

from lsm_core import places
from lsm_core.config import DATASETS, N_CLASSES
from lsm_core.data.fetch import build_mnist_from_pickle, fetch_dataset, verify_nmnist
from lsm_core.data.images import CONTENT_SHA256, load_image_dataset
from lsm_core.data.nmnist_sim import simulate_nmnist_command
from lsm_core.errors import UserError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lsm_core datasets",
                                     description="Fetch, build and verify the datasets.")
    sub = parser.add_subparsers(dest="command", required=True,
                                metavar="{fetch,build-mnist,verify,simulate-nmnist}")
    fetch = sub.add_parser("fetch", help="download or build a dataset into the data folder")
    fetch.add_argument("name", choices=sorted(DATASETS))
    fetch.add_argument("--data-dir", default=None, help=f"data folder (default: {places.describe('datasets')})")
    fetch.add_argument("--source-dir", default=None,
                       help="local folder to read the data from instead of downloading (mnist: mnist.npz or "
                            "mnist.pkl.gz; fmnist: the four IDX files)")
    build = sub.add_parser("build-mnist", help="build mnist.npz from the deeplearning.net mnist.pkl.gz")
    build.add_argument("--from", dest="source", required=True, metavar="FILE", help="mnist.pkl.gz")
    build.add_argument("--out", default=None, help="output npz (default: mnist.npz in the data folder)")
    sub.add_parser("simulate-nmnist", add_help=False,       # dispatched to lsm_core.data.nmnist_sim before parsing
                   help="write a simulated N-MNIST from the MNIST digits (options: simulate-nmnist --help)")
    verify = sub.add_parser("verify", help="check a dataset's layout and checksums (N-MNIST: layout, labels, "
                                           "and a sample of recordings decode)")
    verify.add_argument("name", choices=sorted(DATASETS))
    verify.add_argument("--data-dir", default=None, help=f"data folder (default: {places.describe('datasets')})")
    verify.add_argument("--simulated", action="store_true",
                        help="nmnist: check the simulated recordings (nmnist_simulated/) instead")
    return parser


def datasets_command(argv: list[str]) -> int:
    """Run `python -m lsm_core datasets` with `argv`; returns the exit status (UserError propagates)."""
    if argv[:1] == ["simulate-nmnist"]:                 # its own parser
        return simulate_nmnist_command(argv[1:])
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:           # --help (0) or a usage error (2)
        return int(exc.code or 0)
    if args.command == "fetch":
        fetch_dataset(args.name, args.data_dir, args.source_dir)
    elif args.command == "build-mnist":
        path = build_mnist_from_pickle(args.source, args.out)
        print(f"Wrote {path}; the MNIST checksums match.")
    elif DATASETS[args.name].mode == "event":
        folder = args.data_dir if args.data_dir is not None else places.data_dir()
        verify_nmnist(folder, args.simulated, print)
        print("N-MNIST layout, labels and the sampled recordings are fine"
              + (" (SIMULATED recordings)." if args.simulated else "."))
    else:
        if args.simulated:
            raise UserError(f"--simulated applies to nmnist only, not to {args.name}.")
        data = load_image_dataset(args.name, args.data_dir, verify=True)
        checked = "checksums match" if args.name in CONTENT_SHA256 else "no checksums recorded"
        print(f"{data.path}: x_train {list(data.x_train.shape)}, x_test {list(data.x_test.shape)}, "
              f"labels 0..{N_CLASSES - 1}; {checked}.")
    return 0
