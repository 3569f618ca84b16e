"""Correlate tests: anomaly events built by hand, and the registry's real-PostgreSQL fixtures."""

from __future__ import annotations

from tests.registry.conftest import data_dir, db_dsn, fast_config, pg_server  # noqa: F401
from via_otlp.model import AnomalyEvent, AnomalyKind, EpisodeState, Source

T0 = 1_700_000_000_000_000_000
S = 1_000_000_000


def src(service: str, namespace: str = "") -> Source:
    attrs = ((("service.namespace", namespace),) if namespace else ()) + (
        ("service.name", service),
        ("deployment.environment.name", "prod"),
    )
    return Source.from_attributes(attrs)


def ev(
    episode: str,
    source: Source,
    *,
    t: int = 0,
    state: EpisodeState = EpisodeState.OPEN,
    started: int | None = None,
    template: str = "something failed for <*>",
    traces: tuple[str, ...] = (),
    score: float = 70.0,
    kind: AnomalyKind = AnomalyKind.SPIKE,
) -> AnomalyEvent:
    """An event at T0 + t seconds (started at T0 + `started` seconds, default t)."""
    time_ns = T0 + t * S
    started_ns = T0 + (t if started is None else started) * S
    return AnomalyEvent(
        episode_id=episode,
        kind=kind,
        state=state,
        time_ns=time_ns,
        started_ns=started_ns,
        ended_ns=time_ns if state is EpisodeState.RESOLVED else 0,
        score=score,
        source=source,
        rhythm_hash="rh-" + episode,
        template_id="t-" + episode,
        template=template,
        severity="ERROR",
        expected=1.0,
        observed=30.0,
        baseline_mean=1.0,
        baseline_std=1.0,
        bucket_seconds=10.0,
        explanation="30 per 10 s, expected 1",
        sample_trace_ids=traces,
    )


def tid(n: int) -> str:
    return f"{n:032x}"
