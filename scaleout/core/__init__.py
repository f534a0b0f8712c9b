"""The pure core: scaling rules, knobs, the search-space schema, the plan, placement and the
seam types. Imports nothing above it (no optuna, mlflow, pandas or torch)."""
