"""Running a sweep: the session that opens it, the controller loop, the search engine seam,
the budget, MLflow tracking and the workspace on disk."""
