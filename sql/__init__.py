"""User SQL with DuckDB: the same views over a fresh batch (streaming) or the lake (static), in a sandbox."""
