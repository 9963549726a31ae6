#!/usr/bin/env python3
"""NALSM (astrocyte-modulated STDP) on MNIST. Prompts: GPU, VERSION, NET_NUM_VAR, BATCH_SIZE, BATCHS_PER_BLOCK,
ASTRO_W_SCALING; options: --help. Everything real lives in lsm_core."""
import sys

from lsm_core.cli.scripts import run_script

if __name__ == "__main__":
    sys.exit(run_script("NALSM", "mnist"))
