"""Executors: where trials run (local, slurm, ray), behind base.Executor."""
