"""receive/: the edges where OTLP requests come in and become LogBatches."""
