#!/usr/bin/env python3
"""LSM+AP-STDP on N-MNIST (--simulated-nmnist: the simulated set). Prompts: GPU, VERSION, NET_NUM_VAR,
BATCH_SIZE, BATCHS_PER_BLOCK, STDP_NEURON_RATE_THESHOLD, STDP_NEURON_RATE_RANGE, INTIAL_ABS_W_SCLR; options:
--help. Everything real lives in lsm_core."""
import sys

from lsm_core.cli.scripts import run_script

if __name__ == "__main__":
    sys.exit(run_script("LSM_APSTDP", "nmnist"))
