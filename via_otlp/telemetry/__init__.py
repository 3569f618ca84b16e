"""via-otlp's own telemetry: metrics from the status snapshot (`metrics.py`), rendered as
Prometheus text (`prometheus.py`, `GET /metrics`) or pushed as OTLP (`otlp.py`); batch timing per
stage (`timing.py`)."""
