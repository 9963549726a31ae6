"""The simulation engines: the model's step composed into time loops over a batch of samples.

- `simulator`: `simulate` (the public entry point) and the choice of engine.
- `xla`: compiled TensorFlow graphs that touch every synapse each millisecond (the engine for GPUs).
- `event_driven`: numba loops that touch only the synapses next to a spike (the engine for CPUs).
- `interface`: what both engines share: parameters, input checks, result types.
- `devices`: which GPU TensorFlow may use, and what it actually got.
"""
