"""Sweep files: a grid of ordinary runs, expanded into VERSIONs, checked, and recorded in a manifest.

A sweep file (TOML) names a grid::

    name = "demo"
    first_version = 500            # VERSIONs 500, 501, ... in the expansion order

    [grid]                         # expansion order: model, dataset, net_num, then each scalar in file order
    model = ["LSM", "NALSM"]
    dataset = ["mnist"]
    net_num = [11, 12]             # or "11-20", or one number
    INTIAL_ABS_W_SCLR = [0.8, 1.0] # prompted scalars by their prompt names; a model only expands over its own
    ASTRO_W_SCALING = [0.015]

    [answers]                      # the other prompts
    gpu = "cpu"
    batch_size = 50
    batches_per_block = 2

    [options]                      # the scripts' options by their long names, without the dashes
    train-samples = 500
    seed = "version"               # a number, "version" (seed = VERSION, the default) or "net_num"

Every run of a sweep is an ordinary run: the script of its model and dataset, given the same answers and
options (`SweepRun.command`), resumes or inspects it.  This module parses and checks the file (every
mistake is refused before anything runs, naming its line), expands it, checks the VERSIONs against the
run folders and the other sweeps' manifests, and writes the manifest `<output-root>/sweeps/<name>.json`.
Running the runs, and the `sweep` command, is `workers.py`.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import itertools
import json
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from lsm_core import places
from lsm_core.cli.prompts import Answers, check_batch_size, check_batches_per_block, parse_gpu, parse_scalar
from lsm_core.config import BENCHMARKS, DATASETS, MODELS, RunConfig
from lsm_core.errors import UserError
from lsm_core.runs.folder import MANIFEST_NAME, Manifest, config_identity, describe_differences, run_folder_path
from lsm_core.storage import atomic_write_json, read_json_file

if sys.version_info >= (3, 11):
    import tomllib
else:                                   # Python 3.10: the same parser as a package
    import tomli as tomllib

MANIFEST_FORMAT = 1
SEED_POLICIES = ("version", "net_num")
TOP_KEYS = ("name", "first_version", "description", "grid", "answers", "options")
GRID_KEYS = ("model", "dataset", "net_num")
ANSWER_KEYS = ("gpu", "batch_size", "batches_per_block")
# Script options a sweep sets for all its runs through the sweep command, or never.
PATH_OPTIONS = ("data-dir", "output-root", "networks-dir")
REFUSED_OPTIONS = {"overwrite": "a sweep never deletes runs; remove a run folder by hand to start it again",
                   "help": "not an option of a run"}
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
SCALAR_PROMPTS = {p.name: p for spec in MODELS.values() for p in spec.prompts}


@dataclass(frozen=True)
class SweepPaths:
    """The folders the sweep's runs use (None: the defaults of places.py, ./train_data, ./networks, ./datasets)."""

    output_root: str | None = None
    networks_dir: str | None = None
    data_dir: str | None = None

    def options(self) -> list:
        """The same folders as script options, e.g. ["--output-root", "/data/runs"]."""
        return [arg for flag, value in (("--output-root", self.output_root), ("--networks-dir", self.networks_dir),
                                        ("--data-dir", self.data_dir)) if value for arg in (flag, value)]

    @property
    def root(self) -> Path:
        return Path(self.output_root) if self.output_root else places.output_root()


@dataclass(frozen=True)
class SweepRun:
    """One run of a sweep: its VERSION, the answers to its script's prompts and its options."""

    version: int
    model: str
    dataset: str
    net_num: int
    scalars: dict                  # prompt name -> value, in prompt order
    answers: tuple                 # the prompt answers, one string per line, in prompt order
    options: tuple                 # the script's options (without the folder options)
    seed: int

    @property
    def script(self) -> str:
        from lsm_core.cli.scripts import script_name
        return script_name(self.model, self.dataset)

    def command(self, paths: SweepPaths = SweepPaths()) -> str:
        """The shell command that runs (or resumes) this run with its plain script."""
        answers = "\\n".join(self.answers) + "\\n"
        return f"printf '{answers}' | python {self.script} " + " ".join(
            shlex.quote(a) for a in [*self.options, *paths.options()])

    def config(self, paths: SweepPaths = SweepPaths(), gpu: str | None = None) -> RunConfig:
        """The RunConfig the script would build from these answers and options."""
        from lsm_core.cli.scripts import build_parser, run_config_from
        args = build_parser(self.model, self.dataset).parse_args([*self.options, *paths.options()])
        answers = Answers(gpu if gpu is not None else self.answers[0], self.version, self.net_num,
                          int(self.answers[3]), int(self.answers[4]), dict(self.scalars))
        return run_config_from(self.model, self.dataset, args, answers, self.seed)

    @property
    def label(self) -> str:
        scalars = " ".join(f"{k}={v}" for k, v in self.scalars.items())
        return f"ver_{self.version} {self.model} {self.dataset} net {self.net_num}" + (f" {scalars}" if scalars else "")

    def manifest_entry(self, paths: SweepPaths) -> dict:
        return {"version": self.version, "model": self.model, "dataset": self.dataset, "net_num": self.net_num,
                "scalars": dict(self.scalars), "seed": self.seed, "script": self.script,
                "answers": list(self.answers), "options": list(self.options), "command": self.command(paths)}


@dataclass(frozen=True)
class Sweep:
    name: str
    path: Path
    first_version: int
    runs: tuple                    # SweepRun, in VERSION order
    sha256: str                    # of the sweep file's bytes
    description: str = ""

    @property
    def versions(self) -> list:
        return [run.version for run in self.runs]

    def manifest_path(self, paths: SweepPaths) -> Path:
        return paths.root / "sweeps" / f"{self.name}.json"

    def work_dir(self, paths: SweepPaths) -> Path:
        """`<output-root>/sweeps/<name>/`: worker logs and scheduler files."""
        return paths.root / "sweeps" / self.name


# ----------------------------------------------------------------------------------------------
# Reading a sweep file
# ----------------------------------------------------------------------------------------------

class _Lines:
    """Line numbers of the keys of a TOML text, by (table, key); tomllib keeps none."""

    def __init__(self, text: str, path: Path):
        self.path = path
        self.lines = {}
        table = ""
        for number, line in enumerate(text.splitlines(), 1):
            stripped = line.strip()
            header = re.fullmatch(r"\[\s*([^\[\]]+?)\s*\]\s*(#.*)?", stripped)
            if header:
                table = header.group(1).strip().strip('"')
                self.lines.setdefault((table, None), number)
                continue
            key = re.match(r'("[^"]*"|[A-Za-z0-9_-]+)\s*=', stripped)
            if key:
                self.lines.setdefault((table, key.group(1).strip('"')), number)

    def where(self, table: str, key: str | None = None) -> str:
        number = self.lines.get((table, key)) or self.lines.get((table, None))
        return f"{self.path}, line {number}" if number else str(self.path)

    def error(self, table: str, key: str | None, message: str) -> UserError:
        """"<file>, line N: [table] key: message" (the key once, even when the message starts with it)."""
        name = f"[{table}] " if table else ""
        if key and not message.startswith(f"{key}:"):
            message = f"{key}: {message}"
        return UserError(f"{self.where(table, key)}: {name}{message}")


def _as_list(value) -> list:
    return list(value) if isinstance(value, list) else [value]


def _net_nums(value, lines: _Lines) -> list:
    """net_num: a whole number, a list of them, or a range "first-last"."""
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", value)
        if not match or int(match.group(2)) < int(match.group(1)):
            raise lines.error("grid", "net_num", f"{value!r} is not a range; write e.g. \"0-9\" or a list [0, 1, 2].")
        return list(range(int(match.group(1)), int(match.group(2)) + 1))
    values = _as_list(value)
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
        raise lines.error("grid", "net_num", f"{value!r}: give whole numbers >= 0, a list of them, or a range \"0-9\".")
    return values


def _choices(grid: dict, key: str, allowed, lines: _Lines) -> list:
    if key not in grid:
        raise lines.error("grid", None, f"{key} is missing; give e.g. {key} = [\"{next(iter(allowed))}\"].")
    values = _as_list(grid[key])
    for value in values:
        if value not in allowed:
            raise lines.error("grid", key, f"{value!r} is not one of {', '.join(allowed)}.")
    return values


def _no_repeats(values, table: str, key: str, lines: _Lines) -> None:
    seen = [str(v) for v in values]
    if not values or len(set(seen)) != len(seen):
        what = "is empty" if not values else "lists a value twice (it would run twice)"
        raise lines.error(table, key, f"{values!r} {what}.")


def _scalar_values(grid: dict, lines: _Lines) -> dict:
    """{prompt name: [values]} of the prompted scalars in the grid, in file order."""
    scalars = {}
    for key, value in grid.items():
        if key in GRID_KEYS:
            continue
        if key not in SCALAR_PROMPTS:
            raise lines.error("grid", key, f"unknown key; allowed: {', '.join(GRID_KEYS)} and the prompted scalars "
                                           f"{', '.join(SCALAR_PROMPTS)}.")
        values = _as_list(value)
        _no_repeats(values, "grid", key, lines)
        parsed = []
        for item in values:
            if isinstance(item, bool) or not isinstance(item, (int, float, str)):
                raise lines.error("grid", key, f"{item!r} is not a number.")
            try:
                parsed.append(parse_scalar(SCALAR_PROMPTS[key], str(item)))
            except UserError as exc:
                raise lines.error("grid", key, str(exc)) from None
        scalars[key] = parsed
    return scalars


def _answer(answers: dict, key: str, lines: _Lines) -> int:
    """A whole-number answer >= 1 of [answers]."""
    if key not in answers:
        raise lines.error("answers", None, f"{key} is missing (the {key.upper()} prompt's answer).")
    value = answers[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise lines.error("answers", key, f"{value!r} is not a whole number of at least 1.")
    return value


def _option_argv(key: str, value, lines: _Lines) -> list:
    """One [options] entry as script arguments: a flag for true, nothing for false, else --key value."""
    flag = f"--{key}"
    if isinstance(value, bool):
        return [flag] if value else []
    if isinstance(value, (int, float, str)):
        return [flag, str(value)]
    raise lines.error("options", key, f"{value!r} is not a number, text or true/false.")


@functools.lru_cache(maxsize=None)
def _script_options(model: str, dataset: str) -> frozenset:
    """The long option names (without dashes) of a script's parser."""
    from lsm_core.cli.scripts import build_parser
    return frozenset(option[2:] for action in build_parser(model, dataset)._actions
                     for option in action.option_strings if option.startswith("--"))


def _check_options(argv: list, model: str, dataset: str, option_keys: list, lines: _Lines) -> argparse.Namespace:
    """Parse `argv` with the script's own parser; a mistake names the option's line."""
    from lsm_core.cli.scripts import build_parser

    parser = build_parser(model, dataset)

    def error(message):
        named = re.search(r"--([a-z0-9-]+)", message)
        key = named.group(1) if named and named.group(1) in option_keys else None
        raise lines.error("options", key, message)

    parser.error = error
    return parser.parse_args(argv)


def _seed(policy, version: int, net_num: int) -> int:
    return version if policy == "version" else net_num if policy == "net_num" else int(policy)


@dataclass(frozen=True)
class _Grid:
    """The checked [grid] table: what the sweep expands over."""

    models: list
    datasets: list
    net_nums: list
    scalars: dict                  # prompt name -> values, in file order


def _read_toml(path: Path) -> tuple:
    """(the file's bytes, its TOML content, its key lines); unreadable or invalid TOML is a UserError."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read the sweep file {path} ({exc.strerror or exc}).") from None
    try:
        text = raw.decode("utf-8")
        data = tomllib.loads(text)
    except UnicodeDecodeError:
        raise UserError(f"{path} is not a text file in UTF-8; a sweep file is TOML text.") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path} is not valid TOML: {exc}.") from None
    return raw, data, _Lines(text, path)


def _check_top(data: dict, lines: _Lines) -> tuple:
    """(name, first_version) after checking the top-level keys."""
    for key in data:
        if key not in TOP_KEYS:
            raise lines.error("", key, f"unknown key; allowed at the top: {', '.join(TOP_KEYS)} "
                                       f"(scalars belong in [grid], prompt answers in [answers]).")
    name = data.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise lines.error("", "name", f"{name!r}: give the sweep a name of letters, digits, '_', '.' and '-' "
                                      f"(it names its manifest, sweeps/<name>.json).")
    first_version = data.get("first_version")
    if isinstance(first_version, bool) or not isinstance(first_version, int) or first_version < 0:
        raise lines.error("", "first_version", f"{first_version!r}: give the first VERSION, a whole number >= 0.")
    for table in ("grid", "answers", "options"):
        if not isinstance(data.get(table, {}), dict):
            raise lines.error("", table, f"must be a table: write [{table}] on its own line.")
    return name, first_version


def _check_grid(grid: dict, lines: _Lines) -> _Grid:
    if not grid:
        raise lines.error("", None, "[grid] is missing: it names the models, datasets, liquids and scalars.")
    models = _choices(grid, "model", MODELS, lines)
    datasets = _choices(grid, "dataset", DATASETS, lines)
    if "net_num" not in grid:
        raise lines.error("grid", None, "net_num is missing; give the liquids, e.g. net_num = \"0-9\".")
    net_nums = _net_nums(grid["net_num"], lines)
    for key, values in (("model", models), ("dataset", datasets), ("net_num", net_nums)):
        _no_repeats(values, "grid", key, lines)
    scalars = _scalar_values(grid, lines)
    for key in scalars:
        if not any(key in (p.name for p in MODELS[m].prompts) for m in models):
            raise lines.error("grid", key, f"none of the models {', '.join(models)} asks for {key}.")
    for model in models:
        missing = [p.name for p in MODELS[model].prompts if p.name not in scalars]
        if missing:
            raise lines.error("grid", "model", f"{model} asks for {', '.join(missing)}: add "
                                               f"{missing[0]} = [...] to [grid].")
        for dataset in datasets:
            if (model, dataset) not in BENCHMARKS:
                raise lines.error("grid", "dataset", f"there is no {model} benchmark on {dataset} (no script "
                                                     f"{_script(model, dataset)}); split the sweep in two.")
    return _Grid(models, datasets, net_nums, scalars)


def _check_liquids(grid: _Grid, paths: SweepPaths, lines: _Lines) -> None:
    """A liquid serves one input size: the grid's datasets must agree on it, and so must the liquids that
    already exist under the networks folder (a missing one is generated for the dataset)."""
    import numpy as np

    from lsm_core.model.network import network_path

    sizes = {DATASETS[d].n_input: d for d in grid.datasets}
    if len(sizes) > 1:
        named = " and ".join(f"{d} ({n} inputs)" for n, d in sizes.items())
        raise lines.error("grid", "dataset", f"{named} need liquids of different input sizes, so they cannot share "
                                             f"the same NET_NUM_VARs: split the sweep, one file per input size.")
    (n_input, dataset), = sizes.items()
    for net_num in grid.net_nums:
        path = network_path(net_num, paths.networks_dir)
        try:
            with np.load(path, allow_pickle=False) as stored:
                found = int(stored["n_input"])
        except (OSError, ValueError, KeyError):
            continue                        # missing (generated by the run) or damaged (the run says so)
        if found != n_input:
            raise lines.error("grid", "net_num", f"the liquid {path} has {found} inputs but {dataset} needs "
                                                 f"{n_input}; choose other net_num values (a missing liquid is "
                                                 f"generated for the dataset).")


def _check_answers(answers: dict, lines: _Lines) -> tuple:
    """(gpu, batch_size, batches_per_block) of [answers]."""
    for key in answers:
        if key not in ANSWER_KEYS:
            raise lines.error("answers", key, f"unknown key; allowed: {', '.join(ANSWER_KEYS)} (the other prompts "
                                              f"are the grid's model scalars).")
    try:
        gpu = parse_gpu(str(answers.get("gpu", "cpu")))
    except UserError as exc:
        raise lines.error("answers", "gpu", str(exc)) from None
    return gpu, _answer(answers, "batch_size", lines), _answer(answers, "batches_per_block", lines)


def _check_seed(options: dict, lines: _Lines):
    from lsm_core.cli.scripts import SEED_MAX

    policy = options.get("seed", "version")
    if not (policy in SEED_POLICIES or (isinstance(policy, int) and not isinstance(policy, bool)
                                        and 0 <= policy <= SEED_MAX)):
        raise lines.error("options", "seed", f"{policy!r}: give a seed 0 to {SEED_MAX} for every run, "
                                             f"\"version\" (seed = VERSION) or \"net_num\" (seed = NET_NUM_VAR).")
    return policy


def _script_argv(options: dict, grid: _Grid, model: str, dataset: str, answers: tuple, lines: _Lines) -> list:
    """The [options] that `model`'s script on `dataset` has, as its arguments, checked by the script's own
    parser; the batch answers are checked against the split sizes they give."""
    allowed = _all_script_options(grid.models, grid.datasets) - set(PATH_OPTIONS) - set(REFUSED_OPTIONS)
    known = _script_options(model, dataset)
    argv, used = [], []
    for key, value in options.items():
        if key == "seed":
            continue
        if key in PATH_OPTIONS:
            raise lines.error("options", key, f"give --{key} to the sweep command instead; it applies to "
                                              f"every run and is not part of a run's parameters.")
        if key in REFUSED_OPTIONS or key.startswith("-"):
            raise lines.error("options", key, REFUSED_OPTIONS.get(key, "write option names without dashes."))
        if key not in allowed:
            raise lines.error("options", key, f"unknown option for the scripts of this sweep; their options "
                                              f"are {', '.join(sorted(allowed))}.")
        if key in known:
            argv += _option_argv(key, value, lines)
            used.append(key)
    args = _check_options(argv, model, dataset, used, lines)
    _, batch_size, per_block = answers
    sizes = {"train": args.train_samples, "valid": args.valid_samples, "test": args.test_samples}
    try:
        check_batch_size(batch_size, sizes)
    except UserError as exc:
        raise lines.error("answers", "batch_size", str(exc)) from None
    try:
        check_batches_per_block(per_block, batch_size, sizes)
    except UserError as exc:
        raise lines.error("answers", "batches_per_block", str(exc)) from None
    return argv


def load_sweep(path, paths: SweepPaths = SweepPaths()) -> Sweep:
    """Read, check and expand a sweep file; every mistake is a UserError naming the file and line.

    Expansion order: model, dataset, net_num, then each of the model's scalars in file order; VERSIONs
    count up from first_version in that order.
    """
    path = Path(path)
    raw, data, lines = _read_toml(path)
    name, first_version = _check_top(data, lines)
    grid = _check_grid(data.get("grid"), lines)
    _check_liquids(grid, paths, lines)
    answers = _check_answers(data.get("answers", {}), lines)
    options = data.get("options", {})
    seed_policy = _check_seed(options, lines)
    gpu, batch_size, per_block = answers
    runs, version = [], first_version
    for model in grid.models:
        own = [p.name for p in MODELS[model].prompts]
        for dataset in grid.datasets:
            argv = _script_argv(options, grid, model, dataset, answers, lines)
            for net_num in grid.net_nums:
                swept = [key for key in grid.scalars if key in own]           # file order
                for values in itertools.product(*(grid.scalars[key] for key in swept)):
                    chosen = dict(zip(swept, values))
                    scalars = {key: chosen[key] for key in own}                # prompt order
                    seed = _seed(seed_policy, version, net_num)
                    runs.append(SweepRun(
                        version=version, model=model, dataset=dataset, net_num=net_num, scalars=scalars,
                        answers=(gpu, str(version), str(net_num), str(batch_size), str(per_block),
                                 *(repr(v) if isinstance(v, float) else str(v) for v in scalars.values())),
                        options=(*argv, "--seed", str(seed)), seed=seed))
                    version += 1
    sweep = Sweep(name=name, path=path.resolve(), first_version=first_version, runs=tuple(runs),
                  sha256=hashlib.sha256(raw).hexdigest(), description=str(data.get("description", "")))
    _check_versions(sweep, paths, lines)
    return sweep


def _script(model: str, dataset: str) -> str:
    from lsm_core.cli.scripts import script_name
    return script_name(model, dataset)


def _all_script_options(models, datasets) -> set:
    return {key for m in models for d in datasets for key in _script_options(m, d)}


# ----------------------------------------------------------------------------------------------
# VERSIONs: existing run folders and other sweeps
# ----------------------------------------------------------------------------------------------

def _check_versions(sweep: Sweep, paths: SweepPaths, lines: _Lines) -> None:
    """Refuse VERSIONs that hold, or that another sweep's manifest gives to, a run with other parameters."""
    by_version = {run.version: run for run in sweep.runs}
    for run in sweep.runs:
        folder = run_folder_path(run.version, paths.output_root)
        params = read_json_file(folder / "params.json")
        recorded = params.get("identity") if isinstance(params, dict) else None
        if not isinstance(recorded, dict) or Manifest(folder / MANIFEST_NAME).problem("params.json",
                                                                                     folder / "params.json"):
            continue        # none yet, or damaged: the run itself stops with a message naming it (DamagedFile)
        expected = config_identity(run.config(paths))
        differences = describe_differences({k: recorded.get(k, "<missing>") for k in expected}, expected)
        if differences:
            raise lines.error("", "first_version", f"VERSION {run.version} ({run.label}) already holds a run with "
                                                   f"other parameters ({'; '.join(differences.values())}). Choose a first_version whose "
                                                   f"range {sweep.first_version}-{sweep.runs[-1].version} is free, "
                                                   f"or move that run folder away.")
    for other in sorted((paths.root / "sweeps").glob("*.json")):
        if other.stem == sweep.name:
            continue
        manifest = read_json_file(other)
        if not (isinstance(manifest, dict) and isinstance(manifest.get("runs"), list)):
            raise UserError(f"{other} is damaged: it cannot be read as the manifest of a sweep, so there is no "
                            f"telling which VERSIONs that sweep gave its runs. Run that sweep's command again (it "
                            f"writes its manifest anew from its sweep file and skips finished runs), or delete "
                            f"{other} if that sweep is no longer wanted; then run this command again.")
        for entry in manifest["runs"]:
            run = by_version.get(entry.get("version")) if isinstance(entry, dict) else None
            if run is not None and _entry_identity(entry, paths) != config_identity(run.config(paths)):
                raise lines.error("", "first_version", f"VERSION {run.version} belongs to the sweep "
                                                       f"{manifest.get('name', other.stem)!r} ({other}) with other "
                                                       f"parameters. Choose another first_version.")


def _entry_identity(entry: dict, paths: SweepPaths) -> dict | None:
    """The run identity of another manifest's entry (None when the entry is not readable)."""
    try:
        run = SweepRun(version=int(entry["version"]), model=entry["model"], dataset=entry["dataset"],
                       net_num=int(entry["net_num"]), scalars=dict(entry["scalars"]),
                       answers=tuple(entry["answers"]), options=tuple(entry["options"]), seed=int(entry["seed"]))
        return config_identity(run.config(paths))
    except (KeyError, TypeError, ValueError, IndexError, SystemExit, UserError):
        return None


def _entry_key(entry: dict) -> tuple:
    """What makes two manifest entries the same run."""
    return tuple(json.dumps(entry.get(k), sort_keys=True) for k in ("model", "dataset", "net_num", "scalars",
                                                                      "answers", "options"))


# ----------------------------------------------------------------------------------------------
# The manifest
# ----------------------------------------------------------------------------------------------

def manifest(sweep: Sweep, paths: SweepPaths) -> dict:
    return {"format": MANIFEST_FORMAT, "name": sweep.name, "sweep_file": str(sweep.path),
            "sweep_sha256": sweep.sha256, "description": sweep.description,
            "first_version": sweep.first_version, "last_version": sweep.runs[-1].version if sweep.runs else None,
            "paths": {k: v for k, v in vars(paths).items()},
            "runs": [run.manifest_entry(paths) for run in sweep.runs]}


def write_manifest(sweep: Sweep, paths: SweepPaths, say=print) -> Path:
    """Write `<output-root>/sweeps/<name>.json` atomically; say what changed since the previous one."""
    path = sweep.manifest_path(paths)
    new = manifest(sweep, paths)
    previous = read_json_file(path)
    if path.exists() and not (isinstance(previous, dict) and isinstance(previous.get("runs"), list)):
        say(f"note: the manifest {path} was damaged or unreadable; it is written anew from {sweep.path} "
            f"(the run folders hold the results, the manifest only lists them).")
    elif isinstance(previous, dict) and previous != new:
        old = {e.get("version"): _entry_key(e) for e in previous["runs"] if isinstance(e, dict)}
        now = {e["version"]: _entry_key(e) for e in new["runs"]}
        added = sorted(set(now) - set(old))
        removed = sorted(set(old) - set(now))
        changed = sorted(v for v in set(old) & set(now) if old[v] != now[v])
        if added or removed or changed:
            say(f"note: the sweep {sweep.name!r} changed since its manifest was written: {len(added)} runs added, "
                f"{len(removed)} removed, {len(changed)} changed"
                + (f"; the folders of removed VERSIONs ({_ranges(removed)}) are left as they are" if removed else ""))
    if previous != new:
        atomic_write_json(path, new)
    return path


def manifest_versions(name: str, output_root=None) -> list:
    """The VERSIONs of sweep `name`, from its manifest under `output_root` (for `report --sweep NAME`)."""
    path = SweepPaths(output_root=output_root).root / "sweeps" / f"{name}.json"
    data = read_json_file(path)
    try:
        return [int(entry["version"]) for entry in data["runs"]]
    except (TypeError, KeyError, ValueError):
        known = sorted(p.stem for p in path.parent.glob("*.json"))
        raise UserError(f"there is no readable manifest of a sweep {name!r} ({path}). "
                        + (f"Sweeps there: {', '.join(known)}. " if known else "")
                        + "A sweep writes it when it runs; running the sweep command again rewrites it.") from None


def _ranges(versions) -> str:
    """[3, 4, 5, 9] -> "3-5, 9"."""
    out = []
    for _, group in itertools.groupby(enumerate(versions), key=lambda item: item[1] - item[0]):
        values = [v for _, v in group]
        out.append(str(values[0]) if len(values) == 1 else f"{values[0]}-{values[-1]}")
    return ", ".join(out)


def format_runs(sweep: Sweep, paths: SweepPaths, statuses: dict | None = None) -> str:
    """The table of runs (--dry-run): VERSION, model, dataset, liquid, scalars, seed, status, command."""
    statuses = statuses or {}
    rows = [["VERSION", "model", "dataset", "net", "scalars", "seed", "status", "command"]]
    for run in sweep.runs:
        rows.append([str(run.version), run.model, run.dataset, str(run.net_num),
                     " ".join(f"{k}={v}" for k, v in run.scalars.items()) or "-", str(run.seed),
                     statuses.get(run.version, "-"), run.command(paths)])
    widths = [max(len(row[k]) for row in rows) for k in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1] for row in rows)
