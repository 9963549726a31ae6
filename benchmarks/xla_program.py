"""The XLA engine's learning loop as plain XLA programs: exported here with TensorFlow, timed anywhere JAX runs.

A GPU machine may have JAX but not TensorFlow.  `export` (here, in the project's environment) asks the
XLA engine for the program it compiles for a sample-phase batch (`PlasticSimulator.xla_program`: XLA's
input, before any backend's passes) and writes it with its arguments and this machine's results.
`run` (anywhere with JAX and NumPy; it imports neither TensorFlow nor the toolkit) compiles each program
for JAX's default device, checks what it computes against those results, and times it:

    python benchmarks/xla_program.py export [--dir DIR] [--case 1000x250 ...] [--steps 100] [--rule nalsm]
    python benchmarks/xla_program.py run    [--dir DIR] [--case ...] [--repeats 10] [--json FILE]

DIR (default benchmarks/xla_programs/, ignored by git) holds, per case NxB (N reservoir neurons, B rows):
NxB.hlo.pb (a serialized HloModuleProto), NxB.arguments.npz (its parameters in order, arr_0, arr_1, ...),
NxB.expected.npz (this machine's results) and one manifest.json.

The floor: every step reads and writes every row's learning weights once (the padded synapse tables
included), 2 x 4 bytes x B x table entries; `run` divides that by the bandwidth of a large device copy it
measures first.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIR = ROOT / "benchmarks" / "xla_programs"
DEFAULT_CASES = ("1000x250", "1000x2500", "8000x50", "8000x250")
DIMS = {1000: (10, 10, 10), 8000: (20, 20, 20)}


def parse_case(text: str) -> tuple[int, int]:
    try:
        neurons, batch = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise SystemExit(f"xla_program: a case is NxB (reservoir neurons x rows), e.g. 1000x250; got {text!r}")
    if neurons not in DIMS or batch < 1:
        raise SystemExit(f"xla_program: reservoir sizes are {sorted(DIMS)} and rows at least 1; got {text!r}")
    return neurons, batch


# ----------------------------------------------------------------------------------------------
# export (TensorFlow and the toolkit)
# ----------------------------------------------------------------------------------------------

def export(directory: Path, cases, steps: int, rule: str, seed: int) -> None:
    sys.path.insert(0, str(ROOT))
    import tensorflow as tf

    from lsm_core.cli.bench import BENCH_PARAMS, bench_inputs, bench_weight_scale
    from lsm_core.engines.interface import SimParams, synapse_weights
    from lsm_core.engines.xla import PlasticSimulator
    from lsm_core.model.network import Network
    from lsm_core.model.randomness import sample_keys

    directory.mkdir(parents=True, exist_ok=True)
    manifest = {"tensorflow": tf.__version__, "revision": _revision(), "rule": rule, "steps": steps,
                "seed": seed, "exported_on": time.strftime("%Y-%m-%d"), "cases": {}}
    for text in cases:
        neurons, batch = parse_case(text)
        name = f"{neurons}x{batch}"
        net = Network.generate(dims=DIMS[neurons], n_input=784, seed=seed)
        simulator = PlasticSimulator(net, synapse_weights(net, bench_weight_scale(rule)), rule, "sample",
                                     SimParams(**BENCH_PARAMS[rule]))
        inputs = bench_inputs(784, batch, steps, seed)
        keys = sample_keys(seed, "train", np.arange(batch))
        program = simulator.xla_program(inputs, keys, steps)
        start = time.perf_counter()
        expected = simulator.run(inputs, keys, steps=steps, record=False)
        wall = time.perf_counter() - start
        (directory / f"{name}.hlo.pb").write_bytes(program.hlo)
        np.savez_compressed(directory / f"{name}.arguments.npz", *program.arguments)
        np.savez_compressed(directory / f"{name}.expected.npz", counts=expected.counts, astro=expected.astro,
                            weight_sum=np.sum(expected.weights, dtype=np.float64),
                            weight_abs_sum=np.sum(np.abs(expected.weights), dtype=np.float64))
        entries = sum(int(g.pre.size) for g in simulator.table.groups)   # weights per row, padding included
        manifest["cases"][name] = {
            "reservoir": neurons, "dims": "x".join(map(str, DIMS[neurons])), "n_input": 784, "batch": batch,
            "steps": steps, "n_syn": int(net.n_syn), "table_entries": entries,
            "floor_bytes_per_step": 2 * 4 * batch * entries, "parameters": len(program.arguments),
            "first_call_s_here": round(wall, 3), "mean_rate_hz": round(float(expected.counts.mean()) * 1000 / steps, 3)}
        print(f"{name}: {len(program.hlo) / 1e6:.2f} MB of HLO, {len(program.arguments)} parameters, "
              f"{entries:,} table entries per row; first call here {wall:.1f} s (compilation included), "
              f"{manifest['cases'][name]['mean_rate_hz']} Hz", flush=True)
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")


def _revision() -> str:
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


# ----------------------------------------------------------------------------------------------
# run (JAX and NumPy only)
# ----------------------------------------------------------------------------------------------

def _compile(jax, hlo: bytes, device):
    """A loaded executable of a serialized HloModuleProto on one device (the jaxlib API of 0.4.3x-0.11)."""
    from jax._src.lib import xla_client

    mlir = xla_client._xla.mlir
    if hasattr(mlir, "hlo_to_stablehlo"):
        module = mlir.hlo_to_stablehlo(hlo)
    else:
        module = mlir.xla_computation_to_mlir_module(xla_client.XlaComputation(hlo))
    options = xla_client.CompileOptions()
    compile_and_load = getattr(device.client, "compile_and_load", None) or device.client.compile
    device_lists = [[device]]
    if hasattr(xla_client, "DeviceList"):
        device_lists.append(xla_client.DeviceList((device,)))
    for devices in device_lists:
        try:
            return compile_and_load(module, devices, options)
        except TypeError:          # this jaxlib takes its devices in the other form, or none
            continue
    return compile_and_load(module, options)


def _copy_bandwidth(jax, device, gigabytes: float = 2.0) -> float:
    """Bytes per second of a large device-to-device pass (read once, write once), best of 10."""
    import jax.numpy as jnp

    x = jax.device_put(np.ones(int(gigabytes * 2 ** 30) // 4, np.float32), device)
    step = jax.jit(lambda a: a + 1.0)
    step(x).block_until_ready()
    walls = []
    for _ in range(10):
        start = time.perf_counter()
        step(x).block_until_ready()
        walls.append(time.perf_counter() - start)
    del x
    return 2 * 4 * (int(gigabytes * 2 ** 30) // 4) / min(walls)


def run(directory: Path, cases, repeats: int, json_path) -> None:
    import jax

    manifest = json.loads((directory / "manifest.json").read_text())
    device = jax.devices()[0]
    bandwidth = _copy_bandwidth(jax, device)
    print(f"device {device.device_kind} ({device.platform}), jax {jax.__version__}; exported with TensorFlow "
          f"{manifest['tensorflow']} at {manifest['revision']}; copy bandwidth {bandwidth / 1e9:,.0f} GB/s",
          flush=True)
    results = []
    for name, case in manifest["cases"].items():
        if cases and name not in cases:
            continue
        stored = np.load(directory / f"{name}.arguments.npz")
        arguments = [jax.device_put(stored[f"arr_{i}"], device) for i in range(len(stored.files))]
        start = time.perf_counter()
        executable = _compile(jax, (directory / f"{name}.hlo.pb").read_bytes(), device)
        compile_s = time.perf_counter() - start
        outputs = executable.execute(arguments)
        for out in outputs:
            out.block_until_ready()
        walls = []
        for _ in range(repeats):
            start = time.perf_counter()
            outputs = executable.execute(arguments)
            for out in outputs:
                out.block_until_ready()
            walls.append(time.perf_counter() - start)
        check = _check(np.load(directory / f"{name}.expected.npz"), [np.asarray(out) for out in outputs], case)
        wall = statistics.median(walls)
        step_s = wall / case["steps"]
        floor_s = case["floor_bytes_per_step"] / bandwidth
        result = {"case": name, **case, "device": device.device_kind, "jax": jax.__version__,
                  "compile_s": round(compile_s, 2), "wall_s_all": [round(w, 5) for w in walls],
                  "us_per_step": round(step_s * 1e6, 2), "sample_ms_per_s": round(case["batch"] / step_s, 1),
                  "copy_gb_per_s": round(bandwidth / 1e9, 1), "floor_us_per_step": round(floor_s * 1e6, 2),
                  "times_floor": round(step_s / floor_s, 2),
                  "weight_gb_per_s": round(case["floor_bytes_per_step"] / step_s / 1e9, 1), **check}
        results.append(result)
        print(f"{name}: {result['us_per_step']:,.1f} us/step ({result['sample_ms_per_s']:,.0f} sample-ms/s), "
              f"floor {result['floor_us_per_step']:,.1f} us ({result['times_floor']}x), compile {compile_s:.1f} s; "
              f"{check['check']}", flush=True)
    _table(results)
    if json_path:
        Path(json_path).write_text(json.dumps(results, indent=1) + "\n")


def _check(expected, outputs, case) -> dict:
    """This device's results against the exporting machine's: identical on the same kind of CPU; elsewhere
    the spike trains part at rounding level, so the mean rates and weight sums are compared."""
    counts = outputs[0]
    astro = outputs[2]
    weight_sum = sum(float(np.sum(table, dtype=np.float64)) for table in outputs[3:-2])   # padding slots hold 0
    same_counts = bool(np.array_equal(counts, expected["counts"]))
    same_astro = bool(np.array_equal(astro, expected["astro"]))
    rate = float(counts.mean()) * 1000 / case["steps"]
    rate_expected = float(expected["counts"].mean()) * 1000 / case["steps"]
    relative = abs(weight_sum - float(expected["weight_sum"])) / max(float(expected["weight_abs_sum"]), 1e-30)
    identical = same_counts and same_astro and relative < 1e-9
    return {"identical_to_export": identical, "mean_rate_hz": round(rate, 3),
            "mean_rate_hz_export": round(rate_expected, 3), "weight_sum_relative_difference": relative,
            "check": ("identical to the export's results" if identical else
                      f"rate {rate:.2f} Hz against {rate_expected:.2f} Hz at export, weight sums apart by "
                      f"{relative:.1e} of their magnitude")}


def _table(results) -> None:
    print("\n| case | rows | us per step | sample-ms/s | floor (us) | x floor | weights GB/s | check |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        check = ("identical" if r["identical_to_export"] else
                 f"rates {r['mean_rate_hz']:.2f} / {r['mean_rate_hz_export']:.2f} Hz")
        print(f"| {r['case']} | {r['batch']} | {r['us_per_step']:,.1f} | {r['sample_ms_per_s']:,.0f} | "
              f"{r['floor_us_per_step']:,.1f} | {r['times_floor']} | {r['weight_gb_per_s']:,.0f} | {check} |")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("export", help="write the programs (needs TensorFlow and the toolkit)")
    ex.add_argument("--case", action="append", help=f"NxB; repeatable (default {' '.join(DEFAULT_CASES)})")
    ex.add_argument("--steps", type=int, default=100, help="ms per sample (default 100)")
    ex.add_argument("--rule", default="nalsm", choices=("stdp", "nalsm", "apstdp"))
    ex.add_argument("--seed", type=int, default=1)
    ru = sub.add_parser("run", help="compile, check and time the programs with JAX")
    ru.add_argument("--case", action="append", help="only these cases (default: all exported)")
    ru.add_argument("--repeats", type=int, default=10)
    ru.add_argument("--json", help="also write the results to this file")
    for p in (ex, ru):
        p.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"default {DEFAULT_DIR.relative_to(ROOT)}")
    args = parser.parse_args(argv)
    if args.command == "export":
        export(args.dir, args.case or DEFAULT_CASES, args.steps, args.rule, args.seed)
    else:
        if not (args.dir / "manifest.json").is_file():
            raise SystemExit(f"xla_program: no {args.dir / 'manifest.json'}; run `export` first (with TensorFlow)")
        run(args.dir, args.case, args.repeats, args.json)


if __name__ == "__main__":
    main()
