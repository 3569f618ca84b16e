"""The simulate stage: labelled scenarios replayed through the real pipeline, and scored.

- `scenario.py`: the JSON5 scenario files (`config/scenarios/`), validated with key paths;
- `generate.py`: traffic as OTLP requests (numpy counts per template and bucket) and its truth;
- `run.py`: offline through `via_otlp.app.Pipeline` in event time, or live over OTLP/gRPC;
- `score.py`: matching, precision / recall / F1, delay, false episodes per source per day;
- `report.py`: the table, the JSON report, `evaluation_metrics` rows and plots;
- `cli.py`: `via-otlp simulate SCENARIO... [--live HOST:PORT] [--report FILE] [--plot DIR]`.
"""
