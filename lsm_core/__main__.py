"""`python -m lsm_core <command> ...`: the toolkit's extra tools (docs/README.md#commands)."""
from __future__ import annotations

import os
import sys

COMMANDS = {
    "network": ("lsm_core.model.network", "network_command", "generate a liquid: networks/Network_<N>.npz"),
    "datasets": ("lsm_core.cli.datasets", "datasets_command", "fetch, build or verify datasets"),
    "bench": ("lsm_core.cli.bench", "bench_command", "measure simulation speed (sample-ms/s)"),
    "sweep": ("lsm_core.runs.workers", "sweep_command", "run a grid of runs (sweep file): local CPUs/GPUs, workers, Slurm"),
    "report": ("lsm_core.analysis.report", "report_command", "results of runs, or mean ± sd by group beside the paper's; plots"),
    "readout": ("lsm_core.analysis.readouts", "readout_command",
                "fit another readout (ridge) on a finished run's stored spike counts"),
    "branching": ("lsm_core.analysis.branching", "branching_command", "branching factor of a run's stored rasters"),
    "kernel-quality": ("lsm_core.analysis.kernel_quality", "kernel_quality_command",
                       "kernel quality of a run: ranks SP (test counts) and AP (noisy inputs)"),
}


def _usage() -> str:
    program = "lsm-core" if os.path.basename(sys.argv[0]) == "lsm-core" else "python -m lsm_core"
    lines = [f"usage: {program} [--verbose] <command> [options]   (<command> --help for its options)",
             "", "--verbose shows TensorFlow's own start-up log (hidden unless TF_CPP_MIN_LOG_LEVEL is set)", "",
             "commands:"]
    lines += [f"  {name:<15} {help_text}" for name, (_, _, help_text) in COMMANDS.items()]
    return "\n".join(lines)


def _silence_stdout() -> None:
    """Output piped into `head` and the like, which stopped reading: end quietly, without Python's own
    complaint when it flushes stdout at exit."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def main(argv=None) -> int:
    from importlib import import_module

    from lsm_core.cli.scripts import format_user_error, signals_stop_cleanly
    from lsm_core.engines.devices import quiet_tensorflow
    from lsm_core.errors import UserError, interruption, missing_package

    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = bool(argv) and argv[0] == "--verbose"
    argv = argv[verbose:]
    quiet_tensorflow(verbose)               # before any command imports TensorFlow
    if not argv or argv[0] in ("-h", "--help"):
        try:
            print(_usage(), flush=True)
        except BrokenPipeError:
            _silence_stdout()
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module, function, _ = COMMANDS[name]
    try:
        with signals_stop_cleanly():        # Ctrl-C and SIGTERM stop cleanly; a second one at once
            return int(getattr(import_module(module), function)(rest) or 0)
    except UserError as exc:
        print(format_user_error(exc), file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        print(format_user_error(missing_package(exc)), file=sys.stderr)
        return 2
    except BrokenPipeError:
        _silence_stdout()
        return 0
    except OSError as exc:                  # a file that cannot be read or written (permissions, a full disk)
        where = f" ({exc.filename})" if exc.filename else ""
        print(format_user_error(UserError(f"a file could not be read or written{where}: {exc.strerror or exc}. "
                                          f"Fix the cause and re-run the same command.")), file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        signal_name, status = interruption(exc)
        print(f"\ninterrupted by {signal_name}; finished work is kept, and re-running the same command resumes "
              f"where that is possible", file=sys.stderr)
        return status


if __name__ == "__main__":
    sys.exit(main())
