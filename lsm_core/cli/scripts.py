"""Command-line layer of the run scripts: options, prompts, GPU choice, then the pipeline.

Each top-level script is a shim::

    import sys
    from lsm_core.cli.scripts import run_script
    sys.exit(run_script("NALSM", "mnist"))

Nothing here imports TensorFlow: `run_script` sets CUDA_VISIBLE_DEVICES from the GPU answer first and
only then imports `lsm_core.runs.pipeline`.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import signal
import sys
import textwrap
import threading

from lsm_core import places
from lsm_core.config import DATASETS, ENGINES, MODELS, PAPER, RunConfig
from lsm_core.errors import Terminated, UserError, interruption, interruption_behind, missing_package

SEED_MAX = 2 ** 31 - 1
# Example answers for the --help text; None: no paper value known, a placeholder is shown.
_EXAMPLE_SCALARS = {"ASTRO_W_SCALING": "0.015", "INTIAL_ABS_W_SCLR": "1.0"}


def script_name(model: str, dataset: str) -> str:
    """Top-level script of a model and dataset, e.g. "NALSM_RUN_MAIN_SIM_MNIST.py"."""
    return f"{MODELS[model].name}_RUN_MAIN_SIM_{DATASETS[dataset].script_token}.py"


def format_user_error(exc: BaseException) -> str:
    """"error: <message>" as one paragraph wrapped at 100 columns."""
    message = " ".join(str(exc).split())
    return textwrap.fill(f"error: {message}", width=100, subsequent_indent="  ",
                         break_long_words=False, break_on_hyphens=False)


def int_option(minimum: int = 1, maximum: int | None = None):
    """An argparse `type` for whole numbers in [minimum, maximum] (no upper bound when None)."""
    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum or (maximum is not None and value > maximum):
            allowed = f"at least {minimum}" if maximum is None else f"{minimum} to {maximum}"
            raise argparse.ArgumentTypeError(f"{value} is out of range; allowed: {allowed}")
        return value
    return convert


def _dims_option(text: str) -> tuple:
    from lsm_core.model.network import parse_dims  # NumPy only; no TensorFlow
    try:
        return tuple(parse_dims(text))
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _help_text(model: str, dataset: str) -> tuple:
    from lsm_core.cli.prompts import prompt_texts
    texts = prompt_texts(model)
    lines = ["Prompts, answered one line each, in this order:"]
    lines += [f"  {i}. {text.rstrip(': ').rstrip()}" for i, (_, text) in enumerate(texts, 1)]
    lines[1] += "  (0, 1, ... one GPU; 0,1 several; cpu, -1 or empty: CPU)"
    examples = ["cpu", "1", "1", "250", "10"] + [
        _EXAMPLE_SCALARS.get(p.name, f"<{p.name}>") for p in MODELS[model].prompts]
    pipe = "\\n".join(examples) + "\\n"
    lines += ["", "Answers can be piped in (a bad or missing answer then stops the script with exit",
              "status 2 instead of re-asking), e.g.:",
              f"  printf '{pipe}' | python {script_name(model, dataset)}",
              "", "Without options the run follows the paper's protocol.  Results go to",
              "<output-root>/ver_<VERSION>/; re-running the same command with the same answers",
              "resumes an interrupted run."]
    if DATASETS[dataset].mode == "event":
        lines += ["", "Recordings: <data-dir>/nmnist/{train_all,valid_all,test_all}/ (with labels.csv) or the",
                  "NMNIST/Train, NMNIST/Test folders tonic downloads; missing ones are downloaded through",
                  "tonic (`python -m lsm_core datasets fetch nmnist`).  --simulated-nmnist reads the",
                  "simulated set in <data-dir>/nmnist_simulated/ instead (`python -m lsm_core datasets",
                  "simulate-nmnist`); its results are marked SIMULATED everywhere."]
    elif dataset != "mnist":
        lines += ["", f"A missing <data-dir>/{DATASETS[dataset].file} is built first (`python -m lsm_core",
                  f"datasets fetch {dataset}`: Debian's dataset-fashion-mnist files, else a download)."]
    description = textwrap.fill(
        f"Run the {model} benchmark on {DATASETS[dataset].title}: load or generate the "
        f"liquid, simulate it, train the linear readout, and write the results.", width=79)
    return description, "\n".join(lines)


def build_parser(model: str, dataset: str) -> argparse.ArgumentParser:
    """The options of one run script (docs/model.md#prompts-and-options); defaults are the paper's values."""
    proto = PAPER.protocol
    description, epilog = _help_text(model, dataset)
    parser = argparse.ArgumentParser(prog=script_name(model, dataset), description=description,
                                     epilog=epilog,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--train-samples", type=int_option(1, proto.train_samples), default=proto.train_samples,
        metavar="N", help=f"training samples (default and maximum: {proto.train_samples})")
    add("--valid-samples", type=int_option(1, proto.valid_samples), default=proto.valid_samples,
        metavar="N", help=f"validation samples (default and maximum: {proto.valid_samples})")
    add("--test-samples", type=int_option(1, proto.test_samples), default=proto.test_samples,
        metavar="N", help=f"test samples (default and maximum: {proto.test_samples})")
    init_note = "" if MODELS[model].has_init_phase else "; this model has no init phase: ignored"
    add("--init-samples", type=int_option(1), default=proto.init_samples, metavar="N",
        help=f"samples of the init phase (default: {proto.init_samples}{init_note})")
    add("--readout-epochs", type=int_option(1), default=PAPER.readout.epochs, metavar="N",
        help=f"readout training epochs (default: {PAPER.readout.epochs})")
    max_ms = proto.nmnist_recording_ms if DATASETS[dataset].mode == "event" else None
    add("--duration-ms", type=int_option(1, max_ms), default=proto.duration_ms, metavar="N",
        help=f"sample-phase duration per sample in ms (default: {proto.duration_ms})")
    add("--seed", type=int_option(0, SEED_MAX), default=None, metavar="N",
        help=f"one seed for everything, 0 to {SEED_MAX} (default: drawn at random and recorded "
             f"in params.json; a resumed VERSION reuses its recorded seed)")
    dims = "x".join(map(str, PAPER.generation.default_dims))
    add("--dims", type=_dims_option, default=PAPER.generation.default_dims, metavar="AxBxC",
        help=f"grid of a liquid generated because NET_NUM_VAR does not exist yet (default: {dims})")
    add("--data-dir", metavar="PATH", help=f"dataset folder (default: {places.describe('datasets')})")
    add("--output-root", metavar="PATH",
        help=f"folder of the ver_<VERSION> run folders (default: {places.describe('train_data')})")
    add("--networks-dir", metavar="PATH",
        help=f"folder of the Network_<NET_NUM>.npz liquids (default: {places.describe('networks')})")
    add("--overwrite", action="store_true",
        help="replace an existing VERSION folder whose parameters differ")
    add("--require-gpu", action="store_true",
        help="stop with an error when a GPU asked for is not available (default: warn, use CPU)")
    add("--verbose", action="store_true",
        help="show TensorFlow's own start-up log (hidden by default unless TF_CPP_MIN_LOG_LEVEL is set)")
    add("--engine", choices=ENGINES, default="auto",
        help="simulation engine: events (event-driven, the fast choice on CPUs), xla (compiled dense "
             "tensors, the fast choice on GPUs) or auto (default: events on CPUs, xla on a GPU; a resumed "
             "run keeps the engine it was started with)")
    add("--count-bins", type=int_option(1), default=1, metavar="K",
        help="store each sample's reservoir spike counts in K equal time bins (counts_<split>.npz holds "
             "[n, K, N_res]) for time-resolved readouts (`python -m lsm_core readout VERSION --features bins`); "
             "the paper's readout still reads the totals (default: 1, the totals only)")
    if DATASETS[dataset].mode == "event":
        add("--simulated-nmnist", action="store_true",
            help="run on the simulated N-MNIST (datasets/nmnist_simulated/, written by `python -m lsm_core "
                 "datasets simulate-nmnist`) instead of the real recordings; everything the run writes is "
                 "marked SIMULATED")
    if model == "NALSM":
        add("--astro-density", type=_density_option, default=1.0, metavar="D",
            help="fraction of the reservoir neurons and of the input neurons that feed the astrocyte, "
                 "ceil(D*n) of each drawn from the run seed (the paper's neuron-astrocyte density ablation; "
                 "default: 1.0, every neuron)")
    if model == "LSM_STDP":
        add("--reference-batch-quirk", action="store_true",
            help="reproduce the reference defect where only the first sample of each batch learns "
                 "in the sample phase (docs/model.md#known-defects-of-the-reference-implementation), to "
                 "compare with the paper's LSM+STDP numbers")
    return parser


def _density_option(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a fraction in (0, 1], such as 0.5")
    return value


def _path(text):
    return None if text is None else os.path.abspath(os.path.expanduser(text))


def recorded_seed(output_root, version: int):
    """The seed recorded in <output_root>/ver_<version>/params.json, or None."""
    from lsm_core.runs.folder import run_folder_path  # NumPy only; no TensorFlow
    from lsm_core.storage import read_json_file

    params = read_json_file(run_folder_path(version, output_root) / "params.json")
    if not isinstance(params, dict):
        return None
    for holder in [params] + [v for v in params.values() if isinstance(v, dict)]:
        seed = holder.get("seed")
        if isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed <= SEED_MAX:
            return seed
    return None


def run_config_from(model: str, dataset: str, args: argparse.Namespace, answers, seed: int) -> RunConfig:
    """The RunConfig of a script's parsed options (`build_parser`), its prompt answers (prompts.Answers)
    and the seed: the one place where answers and options become a run (scripts and sweeps)."""
    return RunConfig(
        model=model, dataset=dataset, gpu=answers.gpu, version=answers.version, net_num=answers.net_num,
        batch_size=answers.batch_size, batches_per_block=answers.batches_per_block, scalars=dict(answers.scalars),
        train_samples=args.train_samples, valid_samples=args.valid_samples, test_samples=args.test_samples,
        init_samples=args.init_samples, readout_epochs=args.readout_epochs, duration_ms=args.duration_ms,
        seed=seed, dims=tuple(args.dims), data_dir=_path(args.data_dir), output_root=_path(args.output_root),
        networks_dir=_path(args.networks_dir), overwrite=args.overwrite, require_gpu=args.require_gpu,
        reference_batch_quirk=getattr(args, "reference_batch_quirk", False),
        dataset_simulated=getattr(args, "simulated_nmnist", False), engine=args.engine,
        count_bins=args.count_bins, astro_density=getattr(args, "astro_density", 1.0))


@contextlib.contextmanager
def signals_stop_cleanly():
    """Within the block, Ctrl-C (SIGINT) and SIGTERM (a scheduler's time limit, `kill`) stop the work in
    hand cleanly: the first one raises KeyboardInterrupt (`Terminated` for SIGTERM), so the run logs where
    it stopped, gives its lock back and stays resumable; an error raised while cleaning up after it is
    replaced by it (`errors.interruption_behind`).  A second one, while that is going on, exits at once
    (status 130 or 143)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def exit_now(signum, frame):
        os.write(2, b"\nstopped at once\n")
        os._exit(128 + signum)

    def interrupt(signum, frame):
        signal.signal(signal.SIGINT, exit_now)
        signal.signal(signal.SIGTERM, exit_now)
        raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt

    previous = {signum: signal.signal(signum, interrupt) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    except Exception as exc:        # an error on the way out of an interruption is that interruption
        stopped = interruption_behind(exc)
        if stopped is None:
            raise
        raise stopped from None
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def run_script(model_name: str, dataset_name: str, argv=None) -> int:
    """Parse options, ask the prompts, choose the devices, run the pipeline; return the exit status.

    A UserError anywhere prints "error: ..." on stderr and returns 2; Ctrl-C returns 130, SIGTERM 143.
    """
    parser = build_parser(model_name, dataset_name)
    try:
        args = parser.parse_args(argv)
        if args.count_bins > args.duration_ms:
            parser.error(f"argument --count-bins: {args.count_bins} bins do not fit in {args.duration_ms} ms; "
                         f"choose at most {args.duration_ms} (one bin per millisecond)")
    except SystemExit as exit_:      # --help (0) or an option error (2, already printed)
        return exit_.code if isinstance(exit_.code, int) else 2
    from lsm_core.engines.devices import apply_gpu_choice, quiet_tensorflow

    quiet_tensorflow(args.verbose)
    from lsm_core.cli.prompts import ask_all

    started = False
    try:
        split_sizes = {"train": args.train_samples, "valid": args.valid_samples,
                       "test": args.test_samples}
        answers = ask_all(model_name, split_sizes)
        apply_gpu_choice(answers.gpu)
        output_root = _path(args.output_root)
        seed = args.seed
        if seed is None:
            seed = None if args.overwrite else recorded_seed(output_root, answers.version)
            if seed is None:
                seed = secrets.randbelow(SEED_MAX + 1)
        config = run_config_from(model_name, dataset_name, args, answers, seed)
        from lsm_core.runs import pipeline  # imports TensorFlow: only after apply_gpu_choice
        started = True
        with signals_stop_cleanly():
            pipeline.run(config)
    except UserError as exc:
        print(format_user_error(exc), file=sys.stderr, flush=True)
        return 2
    except ModuleNotFoundError as exc:
        print(format_user_error(missing_package(exc)), file=sys.stderr, flush=True)
        return 2
    except OSError as exc:          # disk full, folder removed under the run, permissions changed...
        where = f" ({exc.filename})" if exc.filename else ""
        print(format_user_error(UserError(
            f"a file could not be read or written{where}: {exc.strerror or exc}. Fix the cause (free disk "
            f"space, permissions) and re-run the same command: finished blocks and readout epochs are kept "
            f"and the run resumes.")), file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt as exc:
        name, status = interruption(exc)
        if started:           # the pipeline says where it stopped (also in run.log)
            where = getattr(exc, "where", None) or f"interrupted by {name}; re-run the same command to resume"
            message = f"{where}. Everything finished so far is saved."
        else:
            message = f"Interrupted by {name} before the run started; nothing was written."
        print("\n" + textwrap.fill(message, width=100), file=sys.stderr, flush=True)
        return status
    return 0
