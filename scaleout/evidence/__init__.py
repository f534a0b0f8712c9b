"""Evidence that centres the lr range on the model, not only on rules (docs/evidence.md).

`noise` estimates the gradient noise scale from the two squared norms a trainer logs, `probe`
runs the reference recipe (or reads a run) and writes probe.json, `fit` fits lr_opt against the
global batch from sweeps already run, `fitplot` draws that fit. Above trainers, executors,
sweep and results; below the CLI.
"""
