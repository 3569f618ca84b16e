-- Each source's learned state (miner model, profiles, schema) as one binary snapshot
-- (via_otlp/state.py's format), so that another instance can take the source over where the
-- last one left it: the Collector's loadbalancing exporter moves a service when instances come
-- and go. Written by the instance that owns the source, read by one that sees it first.
CREATE TABLE source_state (
    source_key  text PRIMARY KEY,
    snapshot    bytea NOT NULL,
    instance    text NOT NULL DEFAULT '',
    updated_at  timestamptz NOT NULL DEFAULT now()
);
