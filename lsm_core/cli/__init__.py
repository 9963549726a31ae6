"""The command line: what people type and read.

- `scripts`: the nine run scripts' options, prompts and start-up (`run_script`).
- `prompts`: the prompt dialogue and its answer checks.
- `datasets`: `lsm-core datasets ...`.
- `bench`: `lsm-core bench`.

The other commands live with what they run (`network`, `sweep`, `report`, `branching`,
`kernel-quality`); `lsm_core/__main__.py` lists them all.
"""
