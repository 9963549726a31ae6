"""Sweep files: expansion into VERSIONs, mistakes refused naming their line, the manifest, --dry-run; damaged
manifests and run folders."""
import csv
import io
import json
import re
from pathlib import Path

import pytest

from lsm_core.__main__ import main
from lsm_core.cli.prompts import Answers, prompt_names
from lsm_core.cli.scripts import build_parser, run_config_from
from lsm_core.errors import UserError
from lsm_core.runs.folder import config_identity
from lsm_core.runs.sweep import SweepPaths, load_sweep, manifest, write_manifest
from tests.damage import damage

REPO = Path(__file__).resolve().parents[2]

DEMO = """\
# demo.toml
name = "demo"
first_version = 500            # VERSIONs 500, 501, ... in the expansion order below

[grid]                          # expansion order: model, dataset, net_num, then each scalar in file order
model = ["LSM", "NALSM"]       # LSM, NALSM, LSM_STDP, LSM_APSTDP
dataset = ["mnist"]
net_num = [11, 12]
INTIAL_ABS_W_SCLR = [0.8, 1.0] # a model only expands over its own scalars
ASTRO_W_SCALING = [0.015]

[answers]
gpu = "cpu"
batch_size = 50
batches_per_block = 2

[options]
train-samples = 500
valid-samples = 100
test-samples = 100
readout-epochs = 30
dims = "4x4x4"
seed = 1
"""


def write(tmp_path, text, name="demo.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def paths_for(tmp_path):
    return SweepPaths(output_root=str(tmp_path / "runs"), networks_dir=str(tmp_path / "nets"))


def test_demo_expands_in_the_documented_order_with_consecutive_versions(tmp_path):
    sweep = load_sweep(write(tmp_path, DEMO), paths_for(tmp_path))
    got = [(r.version, r.model, r.net_num, r.scalars) for r in sweep.runs]
    assert got == [(500, "LSM", 11, {"INTIAL_ABS_W_SCLR": 0.8}), (501, "LSM", 11, {"INTIAL_ABS_W_SCLR": 1.0}),
                   (502, "LSM", 12, {"INTIAL_ABS_W_SCLR": 0.8}), (503, "LSM", 12, {"INTIAL_ABS_W_SCLR": 1.0}),
                   (504, "NALSM", 11, {"ASTRO_W_SCALING": 0.015}), (505, "NALSM", 12, {"ASTRO_W_SCALING": 0.015})]
    run = sweep.runs[4]
    assert run.answers == ("cpu", "504", "11", "50", "2", "0.015")
    assert len(run.answers) == len(prompt_names(run.model))           # one answer per prompt, in order
    assert run.seed == 1 and run.options[-2:] == ("--seed", "1")
    assert run.command() == ("printf 'cpu\\n504\\n11\\n50\\n2\\n0.015\\n' | python NALSM_RUN_MAIN_SIM_MNIST.py "
                             "--train-samples 500 --valid-samples 100 --test-samples 100 --readout-epochs 30 "
                             "--dims 4x4x4 --seed 1")


def test_a_sweep_run_is_the_run_its_plain_script_would_make(tmp_path):
    """The run's config equals what the script builds from the same answers and options."""
    paths = paths_for(tmp_path)
    run = load_sweep(write(tmp_path, DEMO), paths).runs[1]
    args = build_parser("LSM", "mnist").parse_args([*run.options, *paths.options()])
    script = run_config_from("LSM", "mnist", args, Answers("cpu", 501, 11, 50, 2, {"INTIAL_ABS_W_SCLR": 1.0}), 1)
    assert run.config(paths) == script


@pytest.mark.parametrize("policy, seeds", [('"version"', [500, 501, 502, 503, 504, 505]),
                                           ('"net_num"', [11, 11, 12, 12, 11, 12]), ("7", [7] * 6)])
def test_seed_policies(tmp_path, policy, seeds):
    sweep = load_sweep(write(tmp_path, DEMO.replace("seed = 1", f"seed = {policy}")), paths_for(tmp_path))
    assert [r.seed for r in sweep.runs] == seeds


def test_net_num_range_and_single_values(tmp_path):
    text = DEMO.replace("net_num = [11, 12]", 'net_num = "3-5"').replace('model = ["LSM", "NALSM"]', 'model = "LSM"')
    text = text.replace("ASTRO_W_SCALING = [0.015]\n", "")
    sweep = load_sweep(write(tmp_path, text), paths_for(tmp_path))
    assert [r.net_num for r in sweep.runs] == [3, 3, 4, 4, 5, 5]


def test_options_apply_only_to_the_scripts_that_have_them(tmp_path):
    text = DEMO.replace('model = ["LSM", "NALSM"]', 'model = ["LSM", "LSM_STDP"]').replace(
        "seed = 1", "seed = 1\nreference-batch-quirk = true").replace("ASTRO_W_SCALING = [0.015]\n", "")
    sweep = load_sweep(write(tmp_path, text), paths_for(tmp_path))
    assert all(("--reference-batch-quirk" in r.options) == (r.model == "LSM_STDP") for r in sweep.runs)
    assert [r.config(paths_for(tmp_path)).reference_batch_quirk for r in sweep.runs][-1] is True


MISTAKES = [  # (change to DEMO, the line named, words of the message)
    (("batches_per_block = 2", "batches_per_block = 2\ncolour = 3"), 16, "[answers] colour: unknown key"),
    (("ASTRO_W_SCALING = [0.015]", "ASTRO_W_SCALNG = [0.015]"), 10, "[grid] ASTRO_W_SCALNG: unknown key"),
    (("INTIAL_ABS_W_SCLR = [0.8, 1.0]", "INTIAL_ABS_W_SCLR = [0.8, -1.0]"), 9, "out of range"),
    (("INTIAL_ABS_W_SCLR = [0.8, 1.0]", "INTIAL_ABS_W_SCLR = [0.8, 0.8]"), 9, "lists a value twice"),
    (('model = ["LSM", "NALSM"]', 'model = ["LSM", "NALMS"]'), 6, "'NALMS' is not one of"),
    (("batch_size = 50", "batch_size = 60"), 14, "does not divide"),
    (("readout-epochs = 30", 'readout-epochs = "zero"'), 21, "--readout-epochs"),
    (('dims = "4x4x4"', 'dims = "4x4"'), 22, "--dims"),
    (("readout-epochs = 30", 'output-root = "/tmp/x"'), 21, "give --output-root to the sweep command"),
    (("readout-epochs = 30", "overwrite = true"), 21, "never deletes runs"),
    (("readout-epochs = 30", "simulated-nmnist = true"), 21, "unknown option for the scripts of this sweep"),
    (("seed = 1", 'seed = "random"'), 23, '"version"'),
    (("first_version = 500 ", "first_version = -5 "), 3, "whole number >= 0"),
    (('name = "demo"', 'name = "my demo"'), 2, "letters, digits"),
    (("ASTRO_W_SCALING = [0.015]\n", ""), 6, "NALSM asks for ASTRO_W_SCALING"),
    (('dataset = ["mnist"]', 'dataset = ["fmnist"]'), 7, "no LSM benchmark on fmnist"),
    (('net_num = [11, 12]', 'net_num = "12-11"'), 8, "not a range"),
    (('dataset = ["mnist"]', 'dataset = ["mnist", "nmnist"]'), 7, "mnist (784 inputs) and nmnist (2312 inputs)"),
]


@pytest.mark.parametrize("change, line, words", MISTAKES)
def test_mistakes_are_refused_naming_the_line(tmp_path, change, line, words):
    text = DEMO.replace(*change)
    assert text != DEMO
    path = write(tmp_path, text)
    with pytest.raises(UserError) as refused:
        load_sweep(path, paths_for(tmp_path))
    message = str(refused.value)
    assert f"{path}, line {line}:" in message, message
    assert words in message, message


def test_toml_syntax_errors_name_the_line(tmp_path):
    path = write(tmp_path, DEMO.replace("batch_size = 50", "batch_size = = 50"))
    with pytest.raises(UserError, match=r"not valid TOML.*line 14"):
        load_sweep(path, paths_for(tmp_path))
    with pytest.raises(UserError, match="cannot read the sweep file"):
        load_sweep(tmp_path / "missing.toml")


def _fake_run_folder(root, version, config):
    folder = Path(root) / f"ver_{version}"
    folder.mkdir(parents=True)
    identity = {**config_identity(config), "dims": [4, 4, 4], "network_sha256": "x"}
    (folder / "params.json").write_text(json.dumps({"identity": identity, "seed": config.seed}))


def test_versions_holding_runs_with_other_parameters_are_refused(tmp_path):
    paths = paths_for(tmp_path)
    path = write(tmp_path, DEMO)
    sweep = load_sweep(path, paths)
    _fake_run_folder(paths.output_root, 502, sweep.runs[2].config(paths))     # the same run: fine (resumes)
    load_sweep(path, paths)
    other = sweep.runs[3].config(paths)
    _fake_run_folder(paths.output_root, 503, other.__class__(**{**other.__dict__, "train_samples": 1000}))
    with pytest.raises(UserError, match=r"line 3: first_version: VERSION 503 .* other parameters .*train_samples: "
                                        r"was 1000, now 500"):
        load_sweep(path, paths)


def test_another_sweeps_versions_are_refused(tmp_path):
    paths = paths_for(tmp_path)
    write_manifest(load_sweep(write(tmp_path, DEMO), paths), paths, say=lambda m: None)
    other = DEMO.replace('name = "demo"', 'name = "other"').replace("readout-epochs = 30", "readout-epochs = 31")
    load_sweep(write(tmp_path, other, "other.toml"), paths)          # readout epochs are not a run's identity
    clash = DEMO.replace('name = "demo"', 'name = "other"').replace("first_version = 500", "first_version = 503")
    with pytest.raises(UserError, match="VERSION 503 belongs to the sweep 'demo'"):
        load_sweep(write(tmp_path, clash, "other.toml"), paths)


def test_manifest_lists_every_run_and_survives_damage_and_changes(tmp_path):
    paths = paths_for(tmp_path)
    path = write(tmp_path, DEMO)
    sweep = load_sweep(path, paths)
    said = []
    target = write_manifest(sweep, paths, say=said.append)
    assert target == Path(paths.output_root) / "sweeps" / "demo.json"
    data = json.loads(target.read_text())
    assert [r["version"] for r in data["runs"]] == list(range(500, 506))
    assert data["runs"][0]["command"].startswith("printf 'cpu\\n500\\n11\\n50\\n2\\n0.8\\n' | python LSM_RUN")
    assert data == manifest(sweep, paths) and not said
    target.write_text('{"runs": [1, 2')                                  # damaged
    write_manifest(sweep, paths, say=said.append)
    assert "damaged" in said[-1] and json.loads(target.read_text()) == data
    grown = load_sweep(write(tmp_path, DEMO.replace("net_num = [11, 12]", "net_num = [11, 12, 13]")), paths)
    write_manifest(grown, paths, say=said.append)
    assert "changed since its manifest" in said[-1]
    assert len(json.loads(target.read_text())["runs"]) == 9


def test_dry_run_prints_one_line_per_run_and_writes_nothing(tmp_path, capsys):
    path = write(tmp_path, DEMO)
    root = tmp_path / "runs"
    assert main(["sweep", str(path), "--dry-run", "--output-root", str(root)]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if re.match(r"50\d ", line)]
    assert [int(line.split()[0]) for line in rows] == list(range(500, 506))
    assert all("not started" in line for line in rows)
    assert "6 runs, VERSION 500-505" in out
    assert not root.exists()


def test_command_line_mistakes_exit_2(tmp_path, capsys):
    path = write(tmp_path, DEMO)
    assert main(["sweep", str(path), "--worker", "--jobs", "2"]) == 2
    assert main(["sweep", str(path), "--gpus", "cpu"]) == 2
    assert main(["sweep", str(write(tmp_path, "name = 3\n", "bad.toml")), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "--worker runs one worker" in err and "line 1" in err


def test_shipped_paper_sweeps_expand_to_the_run_counts_they_state(tmp_path):
    files = sorted((REPO / "sweeps").glob("paper-*.toml"))
    assert len(files) >= 8
    versions = []
    for path in files:
        text = path.read_text()
        stated = re.search(r"^# runs: (\d+)", text, re.M)
        assert stated and re.search(r"^# expected time on a 2-core CPU: ", text, re.M), path
        sweep = load_sweep(path, paths_for(tmp_path))
        assert len(sweep.runs) == int(stated.group(1)), path
        versions += sweep.versions
    assert len(versions) == len(set(versions))                          # the shipped sweeps never share a VERSION
    demo = load_sweep(REPO / "sweeps" / "demo.toml", paths_for(tmp_path))
    assert demo.versions == list(range(500, 506)) and not set(demo.versions) & set(versions)


def test_existing_liquids_must_fit_the_datasets_input_size(tmp_path):
    from lsm_core.model.network import Network
    paths = paths_for(tmp_path)
    Network.generate(dims=(2, 2, 2), n_input=4, seed=12).save(Path(paths.networks_dir) / "Network_12.npz")
    path = write(tmp_path, DEMO)
    with pytest.raises(UserError, match=r"line 8: \[grid\] net_num: the liquid .*Network_12.npz has 4 inputs but "
                                        r"mnist needs 784"):
        load_sweep(path, paths)


# ---- damaged manifests and run folders ------------------------------------------------------------

def damage_params(path, how):
    """`damage` (half, zeros, flip), or "digit": one bit of a digit of params.json ('500' -> '400', still JSON)."""
    if how != "digit":
        return damage(path, how)
    data = path.read_bytes()
    at = data.index(b'"train_samples": 500') + len(b'"train_samples": ')
    path.write_bytes(data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:])


@pytest.mark.parametrize("how", ["half", "zeros", "flip"])
def test_a_damaged_manifest_is_written_anew_and_report_names_it(tmp_path, capsys, how):
    paths = paths_for(tmp_path)
    sweep = load_sweep(write(tmp_path, DEMO), paths)
    target = write_manifest(sweep, paths, say=lambda m: None)
    damage_params(target, how)
    assert main(["report", "--sweep", "demo", "--output-root", paths.output_root]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"no readable manifest of a sweep 'demo' ({target})" in err and "running the sweep command" in err
    assert "Traceback" not in err
    said = []
    write_manifest(load_sweep(write(tmp_path, DEMO), paths), paths, say=said.append)
    assert f"the manifest {target} was damaged or unreadable; it is written anew" in said[0]
    assert json.loads(target.read_text()) == manifest(sweep, paths)
    assert main(["report", "--sweep", "demo", "--output-root", paths.output_root]) == 0
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("how", ["half", "zeros", "flip"])
def test_another_sweeps_damaged_manifest_is_named_not_ignored(tmp_path, capsys, how):
    """Unread, it would let this sweep take VERSIONs that the other sweep gave its runs."""
    paths = paths_for(tmp_path)
    other = write_manifest(load_sweep(write(tmp_path, DEMO), paths), paths, say=lambda m: None)
    damage_params(other, how)
    clash = write(tmp_path, DEMO.replace('name = "demo"', 'name = "other"'), "other.toml")
    with pytest.raises(UserError) as refused:
        load_sweep(clash, paths)
    message = str(refused.value)
    assert message.startswith(f"{other} is damaged") and "Run that sweep's command again" in message
    assert main(["sweep", str(clash), "--dry-run", "--output-root", paths.output_root,
                 "--networks-dir", paths.networks_dir]) == 2
    assert "Traceback" not in capsys.readouterr().err
    load_sweep(write(tmp_path, DEMO), paths)                      # the damaged sweep itself still loads ...
    write_manifest(load_sweep(write(tmp_path, DEMO), paths), paths, say=lambda m: None)   # ... and mends it
    load_sweep(clash, paths)                                      # the same parameters: fine again


def _recorded_run_folder(paths, run):
    """A run folder of `run` whose params.json was written through RunFolder (recorded in manifest.json)."""
    from lsm_core.runs.folder import RunFolder

    config = run.config(paths)
    identity = {**config_identity(config), "dims": [4, 4, 4], "network_sha256": "x"}
    folder = RunFolder(config)
    folder.open(identity, {}, overwrite=False)
    return folder.file("params.json")


@pytest.mark.parametrize("how", ["half", "zeros", "flip", "digit"])
def test_a_damaged_params_json_of_a_run_is_its_status_not_other_parameters(tmp_path, capsys, how):
    """The sweep still loads (the other runs go on) and names the damage; a damaged params.json that still
    reads as JSON is not taken for a run with other parameters (the advice would be to move a good run away)."""
    paths = paths_for(tmp_path)
    path = write(tmp_path, DEMO)
    sweep = load_sweep(path, paths)
    params = _recorded_run_folder(paths, sweep.runs[2])
    load_sweep(path, paths)                                       # the same run: resumed
    damage_params(params, how)
    load_sweep(path, paths)
    options = ["--output-root", paths.output_root, "--networks-dir", paths.networks_dir]
    assert main(["sweep", str(path), "--dry-run", *options]) == 0
    out, err = capsys.readouterr()
    rows = {line.split()[0]: line for line in out.splitlines() if re.match(r"50\d ", line)}
    assert "damaged: params.json" in rows["502"] and "not started" in rows["503"]
    write_manifest(sweep, paths, say=lambda m: None)
    assert main(["report", "--sweep", "demo", "--output-root", paths.output_root, "--csv"]) == 0
    out, err = capsys.readouterr()
    assert [row["status"] for row in csv.DictReader(io.StringIO(out))] == \
        ["missing", "missing", "damaged: params.json", "missing", "missing", "missing"]
    assert "Traceback" not in err


def test_a_digit_changed_in_params_json_without_a_manifest_is_still_other_parameters(tmp_path):
    """Without manifest.json (a run made before manifests existed) nothing tells the damage apart."""
    paths = paths_for(tmp_path)
    path = write(tmp_path, DEMO)
    params = _recorded_run_folder(paths, load_sweep(path, paths).runs[2])
    (params.parent / "manifest.json").unlink()
    damage_params(params, "digit")
    with pytest.raises(UserError, match="VERSION 502 .* other parameters .*train_samples: was 400, now 500"):
        load_sweep(path, paths)


def test_a_worker_reports_a_run_with_a_damaged_params_json_as_failed_naming_it(tmp_path, capsys, monkeypatch):
    """The run stops before it writes anything (exit status 1 of the worker: some run failed), no traceback."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")     # the worker's "cpu" then changes nothing, TF imported or not
    one = (DEMO.replace('model = ["LSM", "NALSM"]', 'model = "LSM"').replace("net_num = [11, 12]", "net_num = 11")
           .replace("INTIAL_ABS_W_SCLR = [0.8, 1.0]", "INTIAL_ABS_W_SCLR = 0.8")
           .replace("ASTRO_W_SCALING = [0.015]\n", "").replace("batch_size = 50", "batch_size = 10")
           .replace("batches_per_block = 2", "batches_per_block = 1").replace("train-samples = 500", "train-samples = 10")
           .replace("valid-samples = 100", "valid-samples = 10").replace("test-samples = 100", "test-samples = 10")
           .replace('dims = "4x4x4"', 'dims = "2x2x2"'))
    paths = paths_for(tmp_path)
    path = write(tmp_path, one)
    params = _recorded_run_folder(paths, load_sweep(path, paths).runs[0])
    damage_params(params, "half")
    before = sorted(p.name for p in params.parent.iterdir())
    assert main(["sweep", str(path), "--worker", "--no-wait", "--output-root", paths.output_root,
                 "--networks-dir", paths.networks_dir]) == 1
    out, err = capsys.readouterr()
    said = " ".join(out.split())
    assert "FAILED ver_500" in said and f"{params} is damaged: " in said and "cannot be derived again" in said
    assert "Traceback" not in out + err
    assert sorted(p.name for p in params.parent.iterdir()) == before
