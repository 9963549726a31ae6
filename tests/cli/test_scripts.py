"""The run scripts' command-line layer: real subprocesses with piped answers, and an in-process
happy path with a fake pipeline (the real end-to-end run is tested elsewhere)."""
import io
import json
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


import lsm_core.runs
from lsm_core.cli.scripts import build_parser, format_user_error, run_script, script_name
from lsm_core.config import PAPER, RunConfig
from lsm_core.errors import Terminated, UserError


def run_cli(model, answers, *options, extra=""):
    """Run run_script(model, 'mnist') in a fresh interpreter with `answers` piped to stdin."""
    code = ("import sys\nfrom lsm_core.cli.scripts import run_script\n"
            f"rc = run_script({model!r}, 'mnist')\n{extra}\nsys.exit(rc)\n")
    return subprocess.run([sys.executable, "-c", code, *options], cwd=REPO, input=answers,
                          capture_output=True, text=True, timeout=120, check=False)


def flat(text):
    return " ".join(text.split())


# ---- subprocess: piped answers ------------------------------------------------------------------

def test_bad_answer_exits_2_without_traceback():
    result = run_cli("LSM", "cpu\nabc\n1\n250\n10\n1.0\n",
                     extra="print('TF_IMPORTED', 'tensorflow' in sys.modules)")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: VERSION: 'abc' is not a whole number")
    assert "VERSION? [int]: abc" in result.stdout                      # piped answers are echoed
    assert "TF_IMPORTED False" in result.stdout


def test_too_few_answers_exits_2_naming_the_missing_prompt():
    result = run_cli("LSM", "cpu\n1\n1\n")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    message = flat(result.stderr)
    assert "BATCH_SIZE: no answer" in message and "after 3 of 6 answers" in message
    assert "GPU, VERSION, NET_NUM_VAR, BATCH_SIZE, BATCHS_PER_BLOCK, INTIAL_ABS_W_SCLR" in message


def test_batch_size_not_dividing_lists_working_sizes():
    result = run_cli("LSM", "cpu\n1\n1\n300\n1\n1.0\n",
                     "--train-samples", "1000", "--valid-samples", "500", "--test-samples", "500")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert ("batch sizes that divide 1000, 500 and 500: 1, 2, 4, 5, 10, 20, 25, 50, 100, 125, "
            "250, 500") in flat(result.stderr)
    assert all(len(line) <= 100 for line in result.stderr.splitlines())


def test_help_lists_the_prompts_in_order():
    result = run_cli("LSM_APSTDP", "", "--help")
    assert result.returncode == 0
    out = result.stdout
    assert "usage: LSM_APSTDP_RUN_MAIN_SIM_MNIST.py" in out
    names = ["GPU?", "VERSION?", "NET_NUM_VAR?", "BATCH_SIZE?", "BATCHS_PER_BLOCK?",
             "STDP_NEURON_RATE_THESHOLD?", "STDP_NEURON_RATE_RANGE?", "INTIAL_ABS_W_SCLR?"]
    positions = [out.index(name) for name in names]
    assert positions == sorted(positions)
    assert "paper: 250 for 1000-neuron liquids, 50 for 8000" in out
    assert "printf 'cpu\\n1\\n1\\n250\\n10\\n" in out and "| python LSM_APSTDP_RUN_MAIN_SIM_MNIST.py" in out
    for option in ["--train-samples", "--valid-samples", "--test-samples", "--init-samples",
                   "--readout-epochs", "--duration-ms", "--seed", "--dims", "--data-dir",
                   "--output-root", "--networks-dir", "--overwrite", "--require-gpu"]:
        assert option in out
    assert "--reference-batch-quirk" not in out


def test_help_example_for_lsm():
    result = run_cli("LSM", "", "--help")
    assert result.returncode == 0
    assert "printf 'cpu\\n1\\n1\\n250\\n10\\n1.0\\n' | python LSM_RUN_MAIN_SIM_MNIST.py" in result.stdout


@pytest.mark.parametrize("options, fragment", [
    (["--train-samples", "0"], "--train-samples"), (["--seed", "-1"], "--seed"),
    (["--dims", "10x10"], "--dims"), (["--reference-batch-quirk"], "unrecognized arguments"),
    (["--valid-samples", "10001"], "--valid-samples"), (["--count-bins", "0"], "--count-bins"),
    (["--count-bins", "41", "--duration-ms", "40"], "--count-bins: 41 bins do not fit in 40 ms")])
def test_bad_options_exit_2_before_prompting(options, fragment):
    result = run_cli("LSM", "cpu\n1\n1\n250\n10\n1.0\n", *options)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert fragment in result.stderr and "GPU? " not in result.stdout


@pytest.mark.parametrize("value", ["0", "1.5", "half"])
def test_a_bad_astro_density_exits_2_before_prompting(value):
    result = run_cli("NALSM", "cpu\n1\n1\n250\n10\n0.015\n", "--astro-density", value)
    assert result.returncode == 2 and "Traceback" not in result.stderr and "GPU? " not in result.stdout
    assert "--astro-density" in result.stderr and "(0, 1]" in result.stderr


def run_python(code):
    """Run `code` in a fresh interpreter; it must succeed."""
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                            check=False)
    assert result.returncode == 0, result.stderr
    return result


def test_gpu_choice_is_applied_before_tensorflow():
    code = ("import os\nfrom lsm_core.engines.devices import apply_gpu_choice\n"
            "apply_gpu_choice('cpu')\nimport tensorflow\n"
            "print('CVD=' + os.environ['CUDA_VISIBLE_DEVICES'])\n"
            "try:\n    apply_gpu_choice('0')\nexcept RuntimeError:\n    print('REFUSED')\n"
            "apply_gpu_choice('cpu')\nprint('SAME-OK')\n")
    result = run_python(code)
    assert "CVD=-1" in result.stdout and "REFUSED" in result.stdout and "SAME-OK" in result.stdout


def test_check_devices_warns_loudly_or_refuses_when_a_gpu_is_missing():
    code = ("from lsm_core.engines.devices import apply_gpu_choice, check_devices, tensorflow_versions\n"
            "from lsm_core.errors import UserError\n"
            "apply_gpu_choice('cpu')\n"            # hides every GPU, so GPU 0 is surely missing
            "print('USED', check_devices('0', False, print))\n"
            "print('CPU', check_devices('cpu', False, print))\n"
            "try:\n    check_devices('0', True, print)\nexcept UserError as e:\n"
            "    print('REQUIRE', e)\n"
            "print('VERSIONS', sorted(tensorflow_versions()))\n")
    out = run_python(code).stdout
    assert "!" * 100 in out and "NOT AVAILABLE" in out
    assert "USED ['CPU']" in out and "CPU ['CPU']" in out
    assert "REQUIRE GPU 0 asked for" in out and "--require-gpu" in out
    assert "'numpy', 'platform', 'python', 'tensorflow'" in out


# ---- in-process: fake pipeline ------------------------------------------------------------------

@pytest.fixture
def fake_pipeline(monkeypatch):
    """Replace lsm_core.runs.pipeline by a module whose run(config) records the config."""
    calls = []
    module = types.ModuleType("lsm_core.runs.pipeline")
    module.run = lambda config, log=None: calls.append(config) or {}
    monkeypatch.setitem(sys.modules, "lsm_core.runs.pipeline", module)
    monkeypatch.setattr(lsm_core.runs, "pipeline", module, raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")     # "cpu" then changes nothing, TF or not
    module.calls = calls
    return module


def test_happy_path_builds_the_run_config(fake_pipeline, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("cpu\n11\n3\n50\n2\n0.0075\n"))
    argv = ["--train-samples", "1000", "--valid-samples", "500", "--test-samples", "200",
            "--init-samples", "300", "--readout-epochs", "7", "--duration-ms", "40",
            "--seed", "123", "--dims", "4x5x6", "--data-dir", str(tmp_path / "data"),
            "--output-root", str(tmp_path / "out"), "--networks-dir", str(tmp_path / "nets"),
            "--overwrite", "--require-gpu"]
    assert run_script("NALSM", "mnist", argv) == 0
    config, = fake_pipeline.calls
    assert config == RunConfig(
        model="NALSM", dataset="mnist", gpu="cpu", version=11, net_num=3, batch_size=50,
        batches_per_block=2, scalars={"ASTRO_W_SCALING": 0.0075}, train_samples=1000,
        valid_samples=500, test_samples=200, init_samples=300, readout_epochs=7, duration_ms=40,
        seed=123, dims=(4, 5, 6), data_dir=str(tmp_path / "data"),
        output_root=str(tmp_path / "out"), networks_dir=str(tmp_path / "nets"), overwrite=True,
        require_gpu=True, reference_batch_quirk=False)
    assert "ASTRO_W_SCALING? [float]" in capsys.readouterr().out


def test_defaults_are_the_papers_and_the_seed_is_drawn(fake_pipeline, monkeypatch):
    seeds = set()
    for _ in range(3):
        monkeypatch.setattr(sys, "stdin", io.StringIO("-1\n1\n1\n250\n10\n"))
        assert run_script("LSM_STDP", "nmnist", ["--output-root", "/nonexistent/out"]) == 0
        config = fake_pipeline.calls[-1]
        assert 0 <= config.seed <= 2 ** 31 - 1
        seeds.add(config.seed)
    assert len(seeds) > 1
    proto = PAPER.protocol
    assert (config.train_samples, config.valid_samples, config.test_samples) == \
        (proto.train_samples, proto.valid_samples, proto.test_samples)
    assert config.init_samples == proto.init_samples
    assert config.readout_epochs == PAPER.readout.epochs
    assert config.duration_ms == proto.duration_ms
    assert config.dims == PAPER.generation.default_dims
    assert config.data_dir is None and config.networks_dir is None
    assert config.scalars == {} and config.gpu == "cpu"
    assert not (config.overwrite or config.require_gpu or config.reference_batch_quirk)


def test_resumed_version_reuses_its_recorded_seed(fake_pipeline, monkeypatch, tmp_path):
    (tmp_path / "ver_5").mkdir()
    (tmp_path / "ver_5" / "params.json").write_text(json.dumps({"seed": 4242, "version": 5}))
    for argv, expect in [([], 4242), (["--seed", "9"], 9)]:
        monkeypatch.setattr(sys, "stdin", io.StringIO("cpu\n5\n1\n250\n10\n1.0\n"))
        assert run_script("LSM", "mnist", ["--output-root", str(tmp_path), *argv]) == 0
        assert fake_pipeline.calls[-1].seed == expect


def test_reference_batch_quirk_only_for_lsm_stdp(fake_pipeline, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("cpu\n1\n1\n250\n10\n"))
    assert run_script("LSM_STDP", "mnist", ["--reference-batch-quirk", "--seed", "1"]) == 0
    assert fake_pipeline.calls[-1].reference_batch_quirk is True
    for model in ["NALSM", "LSM", "LSM_APSTDP"]:
        assert "--reference-batch-quirk" not in build_parser(model, "mnist").format_help()


def test_pipeline_user_error_and_interrupt(fake_pipeline, monkeypatch, capsys):
    def fail(config, log=None):
        raise UserError("datasets/mnist.npz is missing; " + "run the fetch command " * 12)

    def interrupt(config, log=None):
        raise KeyboardInterrupt

    def terminate(config, log=None):
        raise Terminated

    def disk_full(config, log=None):
        raise OSError(28, "No space left on device", "/data/ver_1/blocks/train_block_00003.npz")

    for run, status, fragment in [(fail, 2, "error: datasets/mnist.npz is missing"),
                                  (interrupt, 130, "interrupted by SIGINT; re-run the same command to resume"),
                                  (terminate, 143, "interrupted by SIGTERM; re-run the same command to resume"),
                                  (disk_full, 2, ("(/data/ver_1/blocks/train_block_00003.npz): No space left on "
                                                  "device. Fix the cause"))]:
        monkeypatch.setattr(fake_pipeline, "run", run)
        monkeypatch.setattr(sys, "stdin", io.StringIO("cpu\n1\n1\n250\n10\n1.0\n"))
        assert run_script("LSM", "mnist", ["--seed", "1"]) == status
        err = capsys.readouterr().err
        assert fragment in flat(err) and "Traceback" not in err
        assert all(len(line) <= 100 for line in err.splitlines())


def test_script_names_and_error_format():
    assert script_name("NALSM", "mnist") == "NALSM_RUN_MAIN_SIM_MNIST.py"
    assert script_name("LSM_STDP", "nmnist") == "LSM_STDP_RUN_MAIN_SIM_N_MNIST.py"
    assert script_name("LSM", "fmnist") == "LSM_RUN_MAIN_SIM_F_MNIST.py"
    assert script_name("LSM_APSTDP", "mnist") == "LSM_APSTDP_RUN_MAIN_SIM_MNIST.py"
    text = format_user_error(UserError("a  problem\nwith   spaces " + "word " * 60))
    assert text.startswith("error: a problem with spaces word")
    assert all(len(line) <= 100 for line in text.splitlines()) and len(text.splitlines()) > 1



# ---- the Fashion-MNIST and N-MNIST scripts ------------------------------------------------------

@pytest.mark.parametrize("model, dataset", [("NALSM", "fmnist"), ("NALSM", "nmnist"), ("LSM_STDP", "nmnist"),
                                            ("LSM", "nmnist"), ("LSM_APSTDP", "nmnist")])
def test_new_scripts_are_shims_of_their_model_and_dataset(model, dataset):
    path = REPO / script_name(model, dataset)
    text = path.read_text()
    assert f'sys.exit(run_script("{model}", "{dataset}"))' in text and len(text.splitlines()) <= 12
    assert path.stat().st_mode & 0o111                   # executable, like the MNIST scripts
    help_text = build_parser(model, dataset).format_help()
    assert f"usage: {path.name}" in help_text
    assert ("--simulated-nmnist" in help_text) == (dataset == "nmnist")


def test_simulated_nmnist_option_reaches_the_run_config(fake_pipeline, monkeypatch):
    for argv, expect in [(["--simulated-nmnist"], True), ([], False)]:
        monkeypatch.setattr(sys, "stdin", io.StringIO("cpu\n1\n1\n250\n10\n0.015\n"))
        assert run_script("NALSM", "nmnist", ["--seed", "1", *argv]) == 0
        config = fake_pipeline.calls[-1]
        assert config.dataset == "nmnist" and config.dataset_simulated is expect
        assert config.dataset_title == ("N-MNIST (SIMULATED)" if expect else "N-MNIST")
    monkeypatch.setattr(sys, "stdin", io.StringIO("cpu\n1\n1\n250\n10\n0.015\n"))
    assert run_script("NALSM", "fmnist", ["--simulated-nmnist"]) == 2          # N-MNIST scripts only
    monkeypatch.setattr(sys, "stdin", io.StringIO("cpu\n1\n1\n250\n10\n0.015\n"))
    assert run_script("NALSM", "fmnist", ["--seed", "1"]) == 0
    assert fake_pipeline.calls[-1].dataset == "fmnist" and not fake_pipeline.calls[-1].dataset_simulated


def test_nmnist_help_explains_where_the_recordings_come_from():
    help_text = " ".join(build_parser("LSM", "nmnist").format_help().split())
    assert "<data-dir>/nmnist/{train_all,valid_all,test_all}/" in help_text
    assert "datasets fetch nmnist" in help_text and "nmnist_simulated/" in help_text
    with pytest.raises(SystemExit):
        build_parser("LSM", "nmnist").parse_args(["--duration-ms", "301"])        # a recording is 300 ms


def test_first_signal_interrupts_cleanly_and_a_second_one_stops_at_once():
    code = textwrap.dedent("""
        import os, signal, sys
        from lsm_core.cli.scripts import signals_stop_cleanly
        from lsm_core.errors import Terminated
        with signals_stop_cleanly():
            try:
                os.kill(os.getpid(), signal.SIGTERM)
            except Terminated:
                print("first: Terminated", flush=True)
            try:
                os.kill(os.getpid(), signal.SIGINT)     # while the first one is being handled
            except KeyboardInterrupt:
                print("second: KeyboardInterrupt (should not happen)", flush=True)
            print("still running (should not happen)", flush=True)
    """)
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.stdout == "first: Terminated\n"
    assert result.returncode == 130 and "stopped at once" in result.stderr and "Traceback" not in result.stderr


def test_the_extra_commands_stop_cleanly_and_name_refused_writes_and_missing_packages(monkeypatch, capsys):
    """`python -m lsm_core <command>`: SIGTERM is exit 143, Ctrl-C 130, a refused write exit 2, no traceback."""
    import errno
    import os
    import signal

    from lsm_core import __main__ as entry
    from lsm_core.storage import WriteFailed

    def sigterm(argv):
        os.kill(os.getpid(), signal.SIGTERM)       # signals_stop_cleanly turns it into Terminated

    def ctrl_c(argv):
        raise KeyboardInterrupt

    def sigterm_then_cleanup_error(argv):         # zipfile failing to close a half-written npz on the way out
        try:
            os.kill(os.getpid(), signal.SIGTERM)
        finally:
            raise ValueError("Can't close the ZIP file while there is an open writing handle on it.")

    def disk_full(argv):
        raise WriteFailed(Path("/data/ver_1/kernel_quality.json"), OSError(errno.ENOSPC, "No space left on device"))

    def no_tensorflow(argv):
        raise ModuleNotFoundError("No module named 'tensorflow'", name="tensorflow")

    fake = types.SimpleNamespace(sigterm=sigterm, ctrl_c=ctrl_c, disk_full=disk_full, no_tensorflow=no_tensorflow,
                                 sigterm_then_cleanup_error=sigterm_then_cleanup_error)
    monkeypatch.setitem(sys.modules, "fake_commands", fake)
    for name, status, fragment in [("sigterm", 143, "interrupted by SIGTERM"), ("ctrl_c", 130, "interrupted by SIGINT"),
                                   ("sigterm_then_cleanup_error", 143, "interrupted by SIGTERM"),
                                   ("disk_full", 2, "error: cannot write /data/ver_1/kernel_quality.json"),
                                   ("no_tensorflow", 2, "the package 'tensorflow' is not installed: install one "
                                                        "TensorFlow build")]:
        monkeypatch.setitem(entry.COMMANDS, name, ("fake_commands", name, ""))
        assert entry.main([name]) == status
        err = capsys.readouterr().err
        assert fragment in " ".join(err.split()) and "Traceback" not in err
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL       # handlers given back


def test_start_up_is_quiet_unless_verbose_or_the_user_set_the_log_level():
    """TensorFlow's C++ start-up notices are hidden; --verbose or the user's TF_CPP_MIN_LOG_LEVEL shows them."""
    import os

    command = ["bench", "--rule", "static", "--engine", "xla", "--dims", "2x2x2", "--batch", "2", "--steps", "5"]
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS")}

    def stderr(*args, **extra_env):
        result = subprocess.run([sys.executable, "-m", "lsm_core", *args], cwd=REPO, capture_output=True, text=True,
                                timeout=300, env={**env, **extra_env})
        assert result.returncode == 0, result.stderr
        return result.stderr

    def tensorflow_log(text):           # the XLA service's start-up line, at least, on every machine
        return "XLA service" in text or "cpu_feature_guard" in text

    assert stderr(*command) == ""
    assert tensorflow_log(stderr("--verbose", *command))
    assert tensorflow_log(stderr(*command, TF_CPP_MIN_LOG_LEVEL="0"))


def test_importing_the_package_keeps_tensorflows_onednn_rewrites_off_unless_the_user_chose():
    """TF_ENABLE_ONEDNN_OPTS defaults to 0 (the same kernels on every CPU), set before TensorFlow loads;
    a value the user set is kept."""
    import os

    code = ("import os, sys; import lsm_core; assert 'tensorflow' not in sys.modules; "
            "print(os.environ['TF_ENABLE_ONEDNN_OPTS'])")
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    for extra, expected in [({}, "0"), ({"TF_ENABLE_ONEDNN_OPTS": "1"}, "1")]:
        result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                                timeout=120, env={**env, **extra})
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == expected
