"""Incidents and their graph in the registry, against the real (embedded) PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import CLIENT_TIMEOUT
from tests.correlate.conftest import ev, fast_config, src, tid
from via_otlp.correlate.config import CorrelateConfig
from via_otlp.correlate.correlator import Correlator, incident_id
from via_otlp.model import EpisodeState, IncidentState, LinkType
from via_otlp.registry import Registry

R = EpisodeState.RESOLVED


async def test_incidents_and_links_round_trip(db_dsn: str, data_dir: Path) -> None:
    c = Correlator(CorrelateConfig(enabled=True, resolve_cooldown=0))
    script = [
        ev("a", src("checkout", "shop"), traces=(tid(1),)),
        ev("b", src("cart", "shop2"), t=5, traces=(tid(2),)),
        ev("c", src("db", "data"), t=10, traces=(tid(1), tid(2))),  # merges b's incident into a's
        ev("m", src("mailer", "comms"), t=10),
        ev("a", src("checkout", "shop"), t=60, state=R, started=0),
        ev("b", src("cart", "shop2"), t=60, state=R, started=5),
        ev("c", src("db", "data"), t=70, state=R, started=10),
    ]
    events = [out for e in script for out in c.observe(e)]
    reg = Registry(fast_config(db_dsn), data_dir)
    await reg.start()
    try:
        for e in events + events:  # replayed: idempotent
            assert reg.record_incident(e)
        assert await reg.flush(CLIENT_TIMEOUT)
        main = await reg.get_incident(incident_id("a"))
        assert main is not None and main.state is IncidentState.RESOLVED
        assert set(main.episode_ids) == {"a", "b", "c"} and main.ended_ns > 0
        assert {(x.episode_id, x.type) for x in main.links} >= {("c", LinkType.TRACE)}
        assert main == events[-1].incident or main.links != ()
        merged = await reg.get_incident(incident_id("b"))
        assert merged is not None and merged.merged_into == incident_id("a")
        page = await reg.list_incidents(limit=1)
        assert len(page.items) == 1 and page.next_page_token
        rest = await reg.list_incidents(limit=10, page_token=page.next_page_token)
        ids = {i.id for i in page.items + rest.items}
        assert ids == {incident_id("a"), incident_id("m")}  # the merged one is left out
        assert {i.id for i in (await reg.list_incidents(include_merged=True)).items} >= ids | {
            incident_id("b")
        }
        assert [i.id for i in (await reg.list_incidents(source="db/data@prod")).items] == []
        only_mail = await reg.list_incidents(source="comms/mailer@prod")
        assert [i.id for i in only_mail.items] == [incident_id("m")]
        opened = await reg.list_incidents(state=IncidentState.OPEN)
        assert [i.id for i in opened.items] == [incident_id("m")]
        assert await reg.incident_of_episode("b") == incident_id("a")
        assert await reg.get_incident("nope") is None
    finally:
        await reg.shutdown()
