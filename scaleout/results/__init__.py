"""Reading a sweep back: the DataFrame, queries, the leaderboard, plots, reports, and the one
writer that publishes them to MLflow."""
