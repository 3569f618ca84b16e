-- via-otlp registry, version 1: patches, schemas, anomalies, incidents, evaluation metrics.
-- Times of telemetry are kept in nanoseconds (bigint) as VIA sees them, with a readable
-- timestamptz beside them where people query by hand.

-- Operator rules that steer the pipeline. A selector field that is '' matches anything, but
-- at least one must be set. `template` is a glob, or a regular expression when it starts
-- with 're:'.
CREATE TABLE patches (
    id          text PRIMARY KEY,
    rule        text NOT NULL CHECK (rule IN ('MUTE', 'DROP', 'THRESHOLD')),
    rhythm_hash text NOT NULL DEFAULT '',
    source      text NOT NULL DEFAULT '',
    template    text NOT NULL DEFAULT '',
    params      jsonb NOT NULL DEFAULT '{}'::jsonb,
    reason      text NOT NULL DEFAULT '',
    author      text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz,
    active      boolean NOT NULL DEFAULT true,
    CONSTRAINT patches_selector_not_empty CHECK (rhythm_hash <> '' OR source <> '' OR template <> ''),
    CONSTRAINT patches_threshold_param CHECK (rule <> 'THRESHOLD' OR jsonb_typeof(params -> 'threshold') = 'number')
);

-- Every change to patches tells every instance (LISTEN via_patches) to reload its cache,
-- whoever made it: an instance, or an operator with psql.
CREATE FUNCTION via_notify_patches() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('via_patches', TG_OP);
    RETURN NULL;
END
$$;

CREATE TRIGGER patches_notify
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON patches
    FOR EACH STATEMENT EXECUTE FUNCTION via_notify_patches();

-- What VIA learned about each source identity: the attribute schema (a versioned snapshot of
-- the schema tracker for that source) and its behavioural profile (top templates and rates).
CREATE TABLE schemas (
    source_key        text PRIMARY KEY,
    source_attributes jsonb NOT NULL DEFAULT '[]'::jsonb,
    attributes        jsonb NOT NULL,
    profile           jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- One row per anomaly episode; `events` holds its events (opening, resolution) as JSON, and
-- the columns the latest state, for queries.
CREATE TABLE anomalies (
    episode_id        text PRIMARY KEY,
    kind              text NOT NULL,
    state             text NOT NULL,
    source_key        text NOT NULL,
    source_attributes jsonb NOT NULL DEFAULT '[]'::jsonb,
    rhythm_hash       text NOT NULL,
    template_id       text NOT NULL DEFAULT '',
    template          text NOT NULL DEFAULT '',
    severity          text NOT NULL DEFAULT '',
    started_ns        bigint NOT NULL,
    ended_ns          bigint NOT NULL DEFAULT 0,
    time_ns           bigint NOT NULL,
    started_at        timestamptz GENERATED ALWAYS AS (to_timestamp(started_ns / 1e9)) STORED,
    max_score         double precision NOT NULL,
    muted             boolean NOT NULL DEFAULT false,
    explanation       text NOT NULL DEFAULT '',
    events            jsonb NOT NULL DEFAULT '[]'::jsonb,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX anomalies_started ON anomalies (started_ns DESC, episode_id DESC);
CREATE INDEX anomalies_time ON anomalies (time_ns);
CREATE INDEX anomalies_source ON anomalies (source_key, started_ns DESC);
CREATE INDEX anomalies_rhythm ON anomalies (rhythm_hash, started_ns DESC);

-- Correlation (filled by correlate/, later): incidents group anomaly episodes. Links do not
-- reference anomalies by foreign key: episodes land asynchronously and may arrive later.
CREATE TABLE incidents (
    id          text PRIMARY KEY,
    title       text NOT NULL DEFAULT '',
    state       text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'resolved')),
    started_ns  bigint NOT NULL,
    ended_ns    bigint NOT NULL DEFAULT 0,
    score       double precision NOT NULL DEFAULT 0,
    summary     jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX incidents_started ON incidents (started_ns DESC);

CREATE TABLE incident_links (
    incident_id text NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    episode_id  text NOT NULL,
    reason      text NOT NULL DEFAULT '',
    weight      double precision NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (incident_id, episode_id)
);
CREATE INDEX incident_links_episode ON incident_links (episode_id);

-- Results of simulate/ runs: one row per run and scenario.
CREATE TABLE evaluation_metrics (
    id                bigserial PRIMARY KEY,
    run               text NOT NULL,
    scenario          text NOT NULL,
    precision         double precision NOT NULL CHECK (precision BETWEEN 0 AND 1),
    recall            double precision NOT NULL CHECK (recall BETWEEN 0 AND 1),
    f1                double precision NOT NULL CHECK (f1 BETWEEN 0 AND 1),
    detection_delay_s double precision,
    params            jsonb NOT NULL DEFAULT '{}'::jsonb,
    recorded_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX evaluation_metrics_run ON evaluation_metrics (run, scenario);
