"""Sessions: one request's lifecycle, its event log, telemetry, record, store and bus."""
