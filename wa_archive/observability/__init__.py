"""Operating the archive: Prometheus metrics, the gauges read from the database, Temporal's SDK
metrics, and the worker's small HTTP server (/metrics, /healthz, /readyz)."""
