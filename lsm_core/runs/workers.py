"""Running a sweep's runs: the worker loop, the executors that start workers, and the `sweep` command.

Everything runs through one worker loop (`work`): it claims the next unfinished run through the run's
lock (lock.py), runs it with the ordinary pipeline (so the run folder, resume and outputs are those
of the plain script), gives the lock back, and goes on until no run is left.  Workers need no
coordinator, so the executors only differ in how they start workers:

* **local** (`--jobs N`, `--gpus 0,1,...`): N child processes on this machine, each with its share of
  the CPU threads, or one GPU each through CUDA_VISIBLE_DEVICES; one overall progress bar and a status
  line per running run; each worker's output goes to `sweeps/<name>/logs/worker-<k>.log`.
* **any scheduler** (`--worker`): this process is one worker; start as many as you like (a Slurm job
  array, an ssh loop, cron) on machines that share the output root.
* **Slurm** (`--backend slurm`): a job array of workers submitted through `submitit`, or run by its
  local executor (`--cluster local`) on this machine through the same code path.

A worker that dies leaves its run resumable and its lock reclaimable (at once on the same machine,
after the stale-lock timeout from another), and another worker finishes the run.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from lsm_core.cli.prompts import parse_gpu
from lsm_core.errors import Terminated, UserError, interruption
from lsm_core.runs.folder import MANIFEST_NAME, Manifest, run_folder_path
from lsm_core.runs.lock import STALE_AFTER_S, RunLock, folder_owner
from lsm_core.runs.sweep import Sweep, SweepPaths, SweepRun, format_runs, load_sweep, write_manifest
from lsm_core.storage import read_json_file

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
                    "TF_NUM_INTEROP_THREADS", "NUMBA_NUM_THREADS")
PACKAGE_PARENT = Path(__file__).resolve().parents[2]   # the folder lsm_core is imported from: the workers' PYTHONPATH
ALLOCATED = "allocated"          # --gpu value: the GPUs a scheduler gave this process (CUDA_VISIBLE_DEVICES)


@dataclass(frozen=True)
class WorkerSettings:
    """How one worker runs: devices, threads, patience.  Picklable (it travels to scheduler jobs)."""

    sweep_file: str
    paths: SweepPaths = SweepPaths()
    gpu: str | None = None            # None: the sweep's GPU answer; "allocated": the scheduler's GPUs
    threads: int | None = None        # CPU threads for TensorFlow and NumPy (None: all)
    wait: bool = True                 # wait for runs held by other workers (they may die) instead of leaving
    stale_after: float = STALE_AFTER_S
    poll_s: float = 5.0
    name: str = ""                    # shown in the log, e.g. "worker 1"


# ----------------------------------------------------------------------------------------------
# Where a run stands
# ----------------------------------------------------------------------------------------------

def run_is_complete(run: SweepRun, paths: SweepPaths, readout_epochs: int) -> bool:
    """True when the run's summary.json says complete with at least the readout epochs asked for, and
    none of its recorded files is missing or cut short (a damaged run is run again, which repairs it)."""
    folder = run_folder_path(run.version, paths.output_root)
    summary = read_json_file(folder / "summary.json")
    manifest = Manifest(folder / MANIFEST_NAME)
    return (isinstance(summary, dict) and summary.get("complete") is True
            and int(summary.get("final_epoch", 0)) >= readout_epochs
            and manifest.problem("summary.json", folder / "summary.json") is None and not manifest.resized(folder))


class RunBook:
    """The sweep's runs with their readout targets, and which of them are complete (cached once true)."""

    def __init__(self, sweep: Sweep, paths: SweepPaths):
        self.sweep, self.paths = sweep, paths
        self.epochs = {run.version: run.config(paths).readout_epochs for run in sweep.runs}
        self._complete = set()

    def complete(self, run: SweepRun) -> bool:
        if run.version not in self._complete and run_is_complete(run, self.paths, self.epochs[run.version]):
            self._complete.add(run.version)
        return run.version in self._complete

    def pending(self) -> list:
        return [run for run in self.sweep.runs if not self.complete(run)]


# ----------------------------------------------------------------------------------------------
# The worker loop
# ----------------------------------------------------------------------------------------------

def _prepare_process(settings: WorkerSettings, sweep_gpu: str) -> str:
    """Choose devices and threads before TensorFlow starts; returns the GPU answer the runs record."""
    from lsm_core.engines.devices import apply_gpu_choice

    if settings.threads:
        for variable in THREAD_VARIABLES:
            os.environ[variable] = str(settings.threads)
        if "numba" in sys.modules:      # already started: its pool keeps its size, use only part of it
            import numba
            numba.set_num_threads(min(settings.threads, numba.config.NUMBA_NUM_THREADS))
    if settings.gpu == ALLOCATED:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
        ids = [part for part in visible.split(",") if part.strip() and part.strip() != "-1"]
        gpu = ",".join(str(k) for k in range(len(ids))) or "cpu"     # CUDA numbers the allocated GPUs 0, 1, ...
        if gpu == "cpu":
            apply_gpu_choice("cpu")
    else:
        gpu = settings.gpu or sweep_gpu
        apply_gpu_choice(gpu)
    import tensorflow as tf

    if settings.threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(settings.threads)
            tf.config.threading.set_inter_op_parallelism_threads(settings.threads)
        except RuntimeError:           # TensorFlow already ran an op in this process: keep its pools
            pass
    return gpu


def work(settings: WorkerSettings, say=print) -> int:
    """Claim and run the sweep's unfinished runs until none is left.  Returns 0 when every run this worker
    tried finished, 1 when some failed (their messages are in the output), 130 (Ctrl-C) or 143 (SIGTERM)
    when interrupted."""
    from lsm_core.cli.scripts import format_user_error, signals_stop_cleanly

    sweep = load_sweep(settings.sweep_file, settings.paths)
    write_manifest(sweep, settings.paths, say)
    book = RunBook(sweep, settings.paths)
    if not book.pending():
        say(f"sweep {sweep.name}: all {len(sweep.runs)} runs are complete")
        return 0
    gpu = _prepare_process(settings, sweep.runs[0].answers[0])
    from lsm_core.runs import pipeline

    me = settings.name or f"worker {os.getpid()}"
    tried, failed = set(), {}
    with signals_stop_cleanly():
        try:
            while True:
                pending = [run for run in book.pending() if run.version not in tried]
                if not pending:
                    break
                claimed = _claim(pending, book, settings)
                if claimed is None:
                    if not settings.wait:
                        say(f"[{me}] the {len(pending)} runs left are held by other workers; leaving them to them")
                        break
                    time.sleep(min(settings.poll_s, settings.stale_after / 4))
                    continue
                run, lock = claimed
                tried.add(run.version)
                say(f"[{me}] {run.label}: {'taking over from ' + lock.taken_over.describe() if lock.taken_over else 'starting'}")
                try:
                    pipeline.run(run.config(settings.paths, gpu=gpu), lock=lock)
                except UserError as exc:
                    failed[run.version] = str(exc)
                    say(f"[{me}] FAILED {run.label}\n{format_user_error(exc)}")
                except OSError as exc:
                    failed[run.version] = f"{exc.strerror or exc} ({exc.filename or ''})"
                    say(f"[{me}] FAILED {run.label}: a file could not be read or written: {failed[run.version]}")
                finally:
                    lock.release()
        except KeyboardInterrupt as exc:
            name, status = interruption(exc)
            say(f"[{me}] interrupted by {name}; everything finished so far is saved, and re-running the sweep "
                f"resumes it")
            return status
    done = sum(book.complete(run) for run in sweep.runs)
    say(f"[{me}] sweep {sweep.name}: {done} of {len(sweep.runs)} runs complete"
        + (f"; {len(failed)} failed here: " + ", ".join(f"ver_{v}" for v in failed) if failed else ""))
    return 1 if failed else 0


def _claim(pending, book: RunBook, settings: WorkerSettings):
    """Take the lock of the first pending run that is free (or whose owner died): (run, lock) or None."""
    for run in pending:
        lock = RunLock(run_folder_path(run.version, settings.paths.output_root), stale_after=settings.stale_after)
        if lock.try_acquire() is None:
            if book.complete(run):         # finished by another worker since we looked
                lock.release()
                continue
            return run, lock
    return None


def slurm_task(settings: WorkerSettings) -> int:
    """One task of a scheduler's job array: a worker (submitit calls this in the job's process)."""
    return work(settings)


# ----------------------------------------------------------------------------------------------
# Watching a sweep: overall progress and a line per running run
# ----------------------------------------------------------------------------------------------

def run_state(run: SweepRun, paths: SweepPaths, stale_after: float = STALE_AFTER_S) -> str:
    """"running (host, PID): spike counts 40%", "complete", "not started", or how far an idle run got."""
    from lsm_core.analysis.report import collect_run

    status = collect_run(run.version, paths.output_root, stale_after).status
    return "not started" if status == "missing" else status


def watch(sweep: Sweep, paths: SweepPaths, alive, names: dict | None = None, poll_s: float | None = None,
          stale_after: float = STALE_AFTER_S) -> None:
    """Show the sweep's progress until `alive()` is False: one bar (runs complete / total, rate, ETA) and,
    at a terminal, a status line per running run (`names` maps a worker PID to its name).  The run folders
    are looked at every `poll_s` seconds (default: 1 s, up to 10 s for sweeps of hundreds of runs)."""
    from tqdm import tqdm

    poll_s = poll_s if poll_s is not None else min(10.0, max(1.0, len(sweep.runs) / 50))
    book = RunBook(sweep, paths)
    names = names or {}
    interactive = sys.stderr.isatty()
    total = len(sweep.runs)
    done = total - len(book.pending())
    bar = tqdm(total=total, initial=done, desc=f"sweep {sweep.name}", unit="run", file=sys.stderr,
               dynamic_ncols=True, mininterval=0.5 if interactive else 30.0, smoothing=0.0)
    lines = []
    seen_running = {}
    try:
        while True:
            finished = not alive()          # looked at before the folders: the last look sees the end
            pending, running = book.pending(), {}
            for run in pending:
                owner = folder_owner(run_folder_path(run.version, paths.output_root), stale_after)
                if owner is not None:
                    running[run.version] = (run, owner)
            now_done = total - len(pending)
            bar.update(now_done - done)
            done = now_done
            if interactive:
                while len(lines) < len(running):
                    lines.append(tqdm(total=0, position=len(lines) + 1, bar_format="{desc}", file=sys.stderr,
                                      leave=False))
                for line, (run, owner) in zip(lines, sorted(running.values(), key=lambda item: item[0].version)):
                    who = names.get(owner.pid, f"{owner.host}:{owner.pid}")
                    state = run_state(run, paths, stale_after)
                    line.set_description_str(f"  {who}: {run.label} - {state.partition('): ')[2] or state}")
                for line in lines[len(running):]:
                    line.set_description_str("")
            else:
                for version, (run, owner) in running.items():
                    if seen_running.get(version) != owner.pid:
                        bar.write(f"{names.get(owner.pid, f'{owner.host}:{owner.pid}')}: started {run.label}",
                                  file=sys.stderr)
                seen_running = {version: owner.pid for version, (run, owner) in running.items()}
            if finished:
                break
            time.sleep(poll_s)
    finally:
        for line in lines:
            line.close()
        bar.close()


def summarize(sweep: Sweep, paths: SweepPaths, logs: str = "") -> int:
    """Print which runs are not complete; 0 when all are, else 1."""
    book = RunBook(sweep, paths)
    pending = book.pending()
    if not pending:
        print(f"sweep {sweep.name}: all {len(sweep.runs)} runs complete. Results: python -m lsm_core report "
              f"--sweep {sweep.name}" + (f" --output-root {paths.output_root}" if paths.output_root else "")
              + " --group-by model,dataset,n_res")
        return 0
    print(f"sweep {sweep.name}: {len(sweep.runs) - len(pending)} of {len(sweep.runs)} runs complete; not complete:",
          file=sys.stderr)
    for run in pending:
        print(f"  {run.label}: {run_state(run, paths)}", file=sys.stderr)
    print("Re-run the same sweep command to resume them" + (f"; worker output is in {logs}" if logs else "") + ".",
          file=sys.stderr)
    return 1


# ----------------------------------------------------------------------------------------------
# Executors
# ----------------------------------------------------------------------------------------------

def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:                     # macOS
        return os.cpu_count() or 1


def _child_environment(threads: int | None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(PACKAGE_PARENT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    if threads:
        env.update({variable: str(threads) for variable in THREAD_VARIABLES})
    return env


def _worker_argv(settings: WorkerSettings) -> list:
    argv = [sys.executable, "-m", "lsm_core", "sweep", settings.sweep_file, "--worker", "--worker-name", settings.name,
            "--stale-after", repr(settings.stale_after), *settings.paths.options()]
    if settings.gpu is not None:
        argv += ["--gpu", settings.gpu]
    if settings.threads:
        argv += ["--threads", str(settings.threads)]
    return argv


def run_local(sweep: Sweep, settings: WorkerSettings, jobs: int = 1, gpus: list | None = None) -> int:
    """N worker processes on this machine (one per GPU with `gpus`), watched until they end."""
    paths = settings.paths
    count = len(gpus) if gpus else jobs
    threads = None if gpus else max(1, _cpu_count() // count)
    logs = sweep.work_dir(paths) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    pending = len(RunBook(sweep, paths).pending())
    print(f"sweep {sweep.name}: {len(sweep.runs)} runs (VERSION {sweep.runs[0].version}-{sweep.runs[-1].version}), "
          f"{pending} to do; {count} worker{'s' if count > 1 else ''} "
          + (f"on GPU {', '.join(gpus)}" if gpus else f"on the CPU, {threads} thread{'s' if threads > 1 else ''} each")
          + f"; worker output in {logs}", file=sys.stderr)
    if not pending:
        return summarize(sweep, paths)
    processes, names, interrupted = [], {}, 0
    try:
        for k in range(count):
            worker = replace(settings, name=f"worker {k}", threads=threads, gpu=gpus[k] if gpus else settings.gpu)
            with open(logs / f"worker-{k}.log", "ab") as log_file:
                process = subprocess.Popen(_worker_argv(worker), stdin=subprocess.DEVNULL, stdout=log_file,
                                           stderr=subprocess.STDOUT, env=_child_environment(threads))
            processes.append(process)
            names[process.pid] = worker.name
        watch(sweep, paths, alive=lambda: any(p.poll() is None for p in processes), names=names,
              stale_after=settings.stale_after)
    except KeyboardInterrupt as exc:
        interrupted = interruption(exc)[1]
        print("\ninterrupted: waiting for the workers to save their work ...", file=sys.stderr)
        for process in processes:
            if isinstance(exc, Terminated) and process.poll() is None:
                process.terminate()           # SIGTERM reached this process only (Ctrl-C reaches the whole group)
        for process in processes:
            try:
                process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                process.kill()
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()           # the workers stop cleanly on SIGTERM
                process.wait()
    status = summarize(sweep, paths, str(logs))
    return interrupted or status


def run_slurm(sweep: Sweep, settings: WorkerSettings, cluster: str | None, tasks: int | None, time_min: int,
              partition: str | None, gpus_per_task: int, cpus_per_task: int | None, array_parallelism: int | None,
              detach: bool) -> int:
    """Submit `tasks` workers as one job array through submitit (`cluster="local"`: its local executor)."""
    try:
        import submitit
    except ImportError:
        raise UserError("--backend slurm needs the submitit package, which is not installed: pip install submitit. "
                        "Without it, start workers yourself with `python -m lsm_core sweep FILE --worker` (for "
                        "example from an sbatch --array script, see the README).") from None
    paths = settings.paths
    pending = len(RunBook(sweep, paths).pending())
    if not pending:
        return summarize(sweep, paths)
    tasks = min(tasks or pending, pending)
    folder = sweep.work_dir(paths) / "slurm"
    executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
    parameters = {"name": f"lsm-sweep-{sweep.name}", "timeout_min": time_min, "cpus_per_task": cpus_per_task,
                  "gpus_per_node": gpus_per_task or None, "slurm_partition": partition,
                  "slurm_array_parallelism": array_parallelism}
    executor.update_parameters(**{k: v for k, v in parameters.items() if v is not None})
    os.environ["PYTHONPATH"] = _child_environment(None)["PYTHONPATH"]    # the jobs import lsm_core from here
    worker = replace(settings, gpu=ALLOCATED if gpus_per_task else "cpu", threads=cpus_per_task or settings.threads)
    jobs = executor.map_array(slurm_task, [replace(worker, name=f"task {k}") for k in range(tasks)])
    print(f"sweep {sweep.name}: submitted {tasks} worker tasks as job {jobs[0].job_id.split('_')[0]} "
          f"({executor.cluster}); scheduler files in {folder}", file=sys.stderr)
    if detach:
        print("Follow it with `python -m lsm_core sweep FILE --dry-run` (the status column) or `python -m lsm_core "
              "report`; re-running the sweep command later resumes anything left.", file=sys.stderr)
        return 0
    try:
        watch(sweep, paths, alive=lambda: not all(job.done() for job in jobs), stale_after=settings.stale_after)
    except KeyboardInterrupt:
        print("\nstopped watching; the submitted jobs go on (cancel them with scancel).", file=sys.stderr)
        return 130
    for job in jobs:
        try:
            job.result()
        except Exception as exc:              # a task that crashed: its output is in the scheduler folder
            print(f"task {job.job_id} failed: {str(exc).splitlines()[-1] if str(exc) else exc!r}; its output is "
                  f"in {folder}", file=sys.stderr)
    return summarize(sweep, paths, str(folder))


# ----------------------------------------------------------------------------------------------
# The command: python -m lsm_core sweep
# ----------------------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    from lsm_core.cli.scripts import int_option
    from lsm_core.runs.lock import STALE_AFTER_S

    parser = argparse.ArgumentParser(
        prog="python -m lsm_core sweep",
        description="Run a grid of runs described by a sweep file (TOML): on this machine (--jobs, --gpus), as "
                    "a worker started by any scheduler (--worker), or as a Slurm job array (--backend slurm). "
                    "Each run is an ordinary run (same folder, resume and outputs as its script); re-running the "
                    "sweep skips finished runs and resumes partial ones.",
        epilog="Example: python -m lsm_core sweep sweeps/demo.toml --dry-run; then --jobs 2.")
    add = parser.add_argument
    add("file", metavar="FILE.toml", help="the sweep file")
    add("--dry-run", action="store_true", help="print the table of runs (VERSION, parameters, status, the plain "
                                               "command of each) and run nothing")
    local = parser.add_argument_group("local executor (the default)")
    local.add_argument("--jobs", type=int_option(1), default=None, metavar="N",
                       help="runs at a time on the CPU, TensorFlow's threads divided between them (default 1)")
    local.add_argument("--gpus", metavar="LIST", help="one run per GPU at a time, e.g. 0,1,2,3 (each worker gets "
                                                      "its own CUDA_VISIBLE_DEVICES)")
    worker = parser.add_argument_group("worker (start any number, under any scheduler)")
    worker.add_argument("--worker", action="store_true", help="claim unfinished runs one after another until none "
                                                              "is left")
    worker.add_argument("--gpu", metavar="ANSWER", help="the GPU answer for this worker's runs (default: the "
                                                        "sweep's); 'allocated': the GPUs the scheduler gave the job")
    worker.add_argument("--threads", type=int_option(1), metavar="N", help="CPU threads of this worker")
    worker.add_argument("--no-wait", action="store_true", help="leave when the remaining runs are all held by other "
                                                               "workers (default: wait, and take over a run whose "
                                                               "worker died)")
    worker.add_argument("--worker-name", default="", help=argparse.SUPPRESS)
    slurm = parser.add_argument_group("Slurm (--backend slurm, through submitit)")
    slurm.add_argument("--backend", choices=("local", "slurm"), default="local", help="who starts the workers")
    slurm.add_argument("--cluster", choices=("slurm", "local", "debug"), default=None,
                       help="submitit's executor (default: Slurm where sbatch exists); 'local' runs the same job "
                            "array as processes on this machine")
    slurm.add_argument("--tasks", type=int_option(1), metavar="N", help="workers in the job array (default: one per "
                                                                        "unfinished run)")
    slurm.add_argument("--array-parallelism", type=int_option(1), metavar="K", help="at most K tasks at once")
    slurm.add_argument("--partition", help="Slurm partition")
    slurm.add_argument("--time", type=int_option(1), default=24 * 60, metavar="MIN",
                       help="time limit per task in minutes (default 1440); a task stopped by it leaves its run "
                            "resumable")
    slurm.add_argument("--gpus-per-task", type=int_option(0), default=0, metavar="G", help="GPUs per task (default 0)")
    slurm.add_argument("--cpus-per-task", type=int_option(1), metavar="C", help="CPU cores per task")
    slurm.add_argument("--detach", action="store_true", help="submit and return instead of watching the jobs")
    common = parser.add_argument_group("folders and locks")
    common.add_argument("--output-root", metavar="DIR", help="folder of the ver_<VERSION> run folders and of "
                                                             "sweeps/ (default: ./train_data, or $LSM_CORE_OUTPUT_ROOT)")
    common.add_argument("--networks-dir", metavar="DIR", help="folder of the liquids (default: ./networks, or $LSM_CORE_NETWORKS_DIR)")
    common.add_argument("--data-dir", metavar="DIR", help="dataset folder (default: ./datasets, or $LSM_CORE_DATA_DIR)")
    common.add_argument("--stale-after", type=float, default=STALE_AFTER_S, metavar="S",
                        help=f"a lock from another machine without a heartbeat for S seconds belongs to a dead "
                             f"worker and is taken over (default {STALE_AFTER_S:.0f})")
    return parser


def sweep_command(argv) -> int:
    """`python -m lsm_core sweep FILE.toml [...]`."""
    from lsm_core.cli.scripts import _path

    args = _parser().parse_args(list(argv))
    if args.worker and (args.jobs or args.gpus or args.backend != "local"):
        raise UserError("--worker runs one worker in this process; it does not combine with --jobs, --gpus or "
                        "--backend slurm.")
    if args.gpus and args.jobs:
        raise UserError("--gpus runs one worker per GPU; leave out --jobs (it would be the number of GPUs).")
    if args.backend == "slurm" and (args.jobs or args.gpus):
        raise UserError("--jobs and --gpus belong to the local executor; with --backend slurm use --tasks and "
                        "--gpus-per-task.")
    if args.stale_after <= 0:
        raise UserError(f"--stale-after {args.stale_after:g}: give a positive number of seconds.")
    gpus = parse_gpu(args.gpus).split(",") if args.gpus else None
    if gpus == ["cpu"]:
        raise UserError(f"--gpus {args.gpus!r}: give GPU indices such as 0,1 (for the CPU use --jobs).")
    gpu = args.gpu if args.gpu in (None, "allocated") else parse_gpu(args.gpu)
    paths = SweepPaths(output_root=_path(args.output_root), networks_dir=_path(args.networks_dir),
                       data_dir=_path(args.data_dir))
    sweep = load_sweep(args.file, paths)
    if args.dry_run:
        statuses = {run.version: run_state(run, paths, args.stale_after) for run in sweep.runs}
        print(format_runs(sweep, paths, statuses))
        print(f"{len(sweep.runs)} runs, VERSION {sweep.runs[0].version}-{sweep.runs[-1].version}; manifest: "
              f"{sweep.manifest_path(paths)} (written when the sweep runs)")
        return 0
    write_manifest(sweep, paths)
    settings = WorkerSettings(sweep_file=str(sweep.path), paths=paths, gpu=gpu, threads=args.threads,
                              wait=not args.no_wait, stale_after=args.stale_after, name=args.worker_name)
    if args.worker:
        return work(settings)
    if args.backend == "slurm":
        return run_slurm(sweep, settings, cluster=args.cluster, tasks=args.tasks, time_min=args.time,
                         partition=args.partition, gpus_per_task=args.gpus_per_task,
                         cpus_per_task=args.cpus_per_task, array_parallelism=args.array_parallelism,
                         detach=args.detach)
    return run_local(sweep, settings, jobs=args.jobs or 1, gpus=gpus)
