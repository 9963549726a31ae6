"""Paper constants, model and dataset tables: the one typed home of every default.

Everything fixed "at the paper's values" (docs/model.md#constants) lives here.  Times are in ms
(one simulation step = 1 ms), membrane quantities in the model's dimensionless mV-like units.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class NeuronConstants:
    """Leaky integrate-and-fire constants shared by all neurons (docs/model.md#the-neuron,
    docs/model.md#the-liquid)."""

    tau_v: float = 64.0            # membrane time constant [ms]
    v_thresh: float = 20.0         # spike threshold
    bias: float = 0.0              # constant bias current per step
    t_refrac: float = 2.0          # refractory period [steps]
    tau_syn: float = 1.0           # synaptic kernel time constant tau_u [ms]
    since_spike_init: float = 20.0  # time since last spike at sample start [ms]
    since_spike_cap: float = 100.0  # cap of the time since last spike [ms]
    input_current: float = 100.0   # current injected into an input neuron per input spike


@dataclass(frozen=True)
class GenerationConstants:
    """Liquid generation (docs/model.md#the-liquid)."""

    exc_fraction: float = 0.8          # N_exc = round(0.8 * N_res)
    lam: float = 3.0                   # connection length constant lambda [grid units]
    c_ee: float = 0.2                  # C(E <- E)
    c_ie: float = 0.1                  # C(I <- E)  (post inhibitory, pre excitatory)
    c_ei: float = 0.3                  # C(E <- I)
    c_ii: float = 0.05                 # C(I <- I)
    input_fraction: float = 0.15       # input synapses = int(0.15 * N_res * n_input)
    default_dims: tuple = (10, 10, 10)


@dataclass(frozen=True)
class PlasticityConstants:
    """STDP, astrocyte and AP-STDP constants (docs/model.md#plasticity, docs/model.md#the-astrocyte,
    docs/model.md#the-decays)."""

    lr: float = 0.15                          # eta_0
    lr_decay: float = 0.99                    # per-ms decay in the sample phase
    w_max: float = 3.0                        # weight bound and NALSM/STDP magnitude
    trace_decay: float = 0.9047744744744745   # per-step trace factor d
    trace_increment: float = 0.1              # trace jump per spike (before the decay)
    astro_tau: float = 100.0                  # tau_A [ms]
    astro_bias_offset: float = 0.0
    calcium_tau: float = 1000.0               # tau_C [ms]


@dataclass(frozen=True)
class ReadoutConstants:
    """Linear readout training (docs/model.md#the-readout)."""

    learning_rate: float = 0.1
    rho: float = 0.95
    epsilon: float = 1e-8
    l2: float = 5e-10
    epochs: int = 5000


@dataclass(frozen=True)
class ProtocolConstants:
    """Run protocol sizes (docs/model.md#the-protocol)."""

    init_samples: int = 50000
    init_duration_ms: int = 20
    duration_ms: int = 250
    train_samples: int = 50000
    valid_samples: int = 10000
    test_samples: int = 10000
    raster_samples: int = 20          # rasters kept per raster_every samples
    raster_every: int = 10000
    nmnist_recording_ms: int = 300
    nmnist_init_start_max: int = 278  # init window start uniform in [1, 278]


@dataclass(frozen=True)
class PaperConstants:
    neuron: NeuronConstants = field(default_factory=NeuronConstants)
    generation: GenerationConstants = field(default_factory=GenerationConstants)
    plasticity: PlasticityConstants = field(default_factory=PlasticityConstants)
    readout: ReadoutConstants = field(default_factory=ReadoutConstants)
    protocol: ProtocolConstants = field(default_factory=ProtocolConstants)

    def as_dict(self) -> dict:
        return asdict(self)


PAPER = PaperConstants()


@dataclass(frozen=True)
class EvaluationConstants:
    """Settings of the evaluation tools (docs/evaluation.md#evaluating-runs).  Kept apart from PAPER
    because they do not change a run's numbers (PAPER is part of every run's identity)."""

    branching_margin_ms: int = 25          # buffer at each end of a sample; with the window, spikes at
                                           # 25 + 4 <= t < 250 - 25 - 4 count (29 <= t < 221 ms)
    branching_window_ms: int = 4           # source window [t-4, t) and target window [t+1, t+5)
    kernel_per_class: int = 100            # test samples per class in one rank draw
    kernel_draws: int = 1000               # draws averaged
    kernel_noise_std: float = 125.0        # MNIST/Fashion-MNIST pixel noise, 0-255 scale
    kernel_shift_std_ms: float = 10.0      # N-MNIST time shift per recording


EVALUATION = EvaluationConstants()


@dataclass(frozen=True)
class LockConstants:
    """The run-folder lock (runs/lock.py): one writer per `ver_<VERSION>` folder, across machines."""

    heartbeat_s: float = 30.0        # the owner touches its lock file this often
    stale_after_s: float = 300.0     # another machine's lock without a heartbeat for this long is dead
    break_stale_s: float = 60.0      # a break lock older than this was left by a crashed breaker


LOCKS = LockConstants()


# ----------------------------------------------------------------------------------------------
# Prompts, models, datasets
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ScalarPrompt:
    """One model-specific prompt (docs/model.md#prompts-and-options); `name` is the prompt and the
    params.json key."""

    name: str
    kind: type             # int or float
    hint: str              # the paper's values, shown after the name
    minimum: float | None = None
    exclusive_minimum: bool = False

    @property
    def text(self) -> str:
        return f"{self.name}? [{self.kind.__name__}] {self.hint}: " if self.hint else \
            f"{self.name}? [{self.kind.__name__}]: "


@dataclass(frozen=True)
class ModelSpec:
    """One of the four models (docs/model.md#the-four-models)."""

    name: str                        # "LSM", "NALSM", "LSM_STDP", "LSM_APSTDP"
    sample_rule: str                 # simulate() rule of the spike-count phase
    init_rule: str | None         # simulate() rule of the init phase, None: no init phase
    prompts: tuple                   # ScalarPrompt, in prompt order
    weight_scale_prompt: str | None  # prompt that gives the weight magnitude, None: w_max

    @property
    def has_init_phase(self) -> bool:
        return self.init_rule is not None


_W_SCALE = ScalarPrompt("INTIAL_ABS_W_SCLR", float, "(magnitude of every liquid weight; e.g. 1.0)",
                        minimum=0.0, exclusive_minimum=True)

MODELS = {
    "NALSM": ModelSpec(
        "NALSM", "nalsm", "nalsm",
        (ScalarPrompt("ASTRO_W_SCALING", float,
                      "(paper: 0.015 for 1000-neuron liquids, 0.0075 for 8000)", minimum=0.0),),
        None),
    "LSM_STDP": ModelSpec("LSM_STDP", "stdp", "stdp", (), None),
    "LSM": ModelSpec("LSM", "static", None, (_W_SCALE,), "INTIAL_ABS_W_SCLR"),
    "LSM_APSTDP": ModelSpec(
        "LSM_APSTDP", "static", "apstdp",
        (ScalarPrompt("STDP_NEURON_RATE_THESHOLD", float, "(calcium threshold theta, ~Hz)",
                      minimum=0.0),
         ScalarPrompt("STDP_NEURON_RATE_RANGE", float, "(calcium window half-width rho, ~Hz)",
                      minimum=0.0, exclusive_minimum=True),
         _W_SCALE),
        "INTIAL_ABS_W_SCLR"),
}

# The nine benchmarks: (model, dataset) pairs that have a top-level script (cli.script_name).
BENCHMARKS = (("NALSM", "mnist"), ("NALSM", "nmnist"), ("NALSM", "fmnist"), ("LSM_STDP", "mnist"),
              ("LSM_STDP", "nmnist"), ("LSM", "mnist"), ("LSM", "nmnist"), ("LSM_APSTDP", "mnist"),
              ("LSM_APSTDP", "nmnist"))


@dataclass(frozen=True)
class DatasetSpec:
    name: str            # "mnist", "fmnist", "nmnist"
    script_token: str    # "MNIST", "F_MNIST", "N_MNIST" as in the script names
    n_input: int
    mode: str            # "image" or "event"
    file: str            # file or folder under the data directory
    title: str = ""      # name for people: log lines, plot titles


DATASETS = {
    "mnist": DatasetSpec("mnist", "MNIST", 784, "image", "mnist.npz", "MNIST"),
    "fmnist": DatasetSpec("fmnist", "F_MNIST", 784, "image", "fmnist.npz", "Fashion-MNIST"),
    "nmnist": DatasetSpec("nmnist", "N_MNIST", 2 * 34 * 34, "event", "nmnist", "N-MNIST"),
}

N_CLASSES = 10


# Simulation engines: "xla" compiles dense tensor loops with TensorFlow (the engine for GPUs); "events"
# runs event-driven loops compiled with numba, touching only synapses next to a spike (the engine for
# CPUs); "auto" picks events on CPUs and xla where a GPU is used.  Both give the same dynamics.
ENGINES = ("auto", "xla", "events")


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines one benchmark run: prompt answers plus command-line options.

    `params.json` of a run folder is built from this; two runs with equal configs (seed included)
    produce the same results, which is what lets a re-run resume.
    """

    model: str                      # key of MODELS
    dataset: str                    # key of DATASETS
    gpu: str                        # normalised GPU answer: "cpu" or "0", "0,1", ...
    version: int
    net_num: int
    batch_size: int
    batches_per_block: int
    scalars: dict                   # model prompt name -> value, e.g. {"ASTRO_W_SCALING": 0.015}
    train_samples: int = PAPER.protocol.train_samples
    valid_samples: int = PAPER.protocol.valid_samples
    test_samples: int = PAPER.protocol.test_samples
    init_samples: int = PAPER.protocol.init_samples
    readout_epochs: int = PAPER.readout.epochs
    duration_ms: int = PAPER.protocol.duration_ms
    seed: int = 0
    dims: tuple = GenerationConstants().default_dims
    data_dir: str | None = None          # None: places.data_dir() ($LSM_CORE_DATA_DIR or ./datasets)
    output_root: str | None = None       # None: places.output_root() ($LSM_CORE_OUTPUT_ROOT or ./train_data)
    networks_dir: str | None = None      # None: places.networks_dir() ($LSM_CORE_NETWORKS_DIR or ./networks)
    overwrite: bool = False
    require_gpu: bool = False
    reference_batch_quirk: bool = False
    dataset_simulated: bool = False         # N-MNIST: the simulated recordings (--simulated-nmnist)
    engine: str = "auto"                    # simulation engine: "auto", "xla" or "events" (see ENGINES)
    count_bins: int = 1                     # spike counts stored per sample in this many time bins (1: totals)
    astro_density: float = 1.0              # NALSM: fraction of reservoir and of input neurons feeding the astrocyte

    @property
    def model_spec(self) -> ModelSpec:
        return MODELS[self.model]

    @property
    def dataset_spec(self) -> DatasetSpec:
        return DATASETS[self.dataset]

    @property
    def dataset_title(self) -> str:
        """The dataset's name for log lines, plots and summaries, e.g. "N-MNIST (SIMULATED)"."""
        title = self.dataset_spec.title or self.dataset
        return f"{title} (SIMULATED)" if self.dataset_simulated else title

    @property
    def split_sizes(self) -> dict:
        return {"valid": self.valid_samples, "test": self.test_samples, "train": self.train_samples}
