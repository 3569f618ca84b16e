-- The incident graph (filled by correlate/). `incident_links` becomes an edge list: a row says
-- that `episode_id` joined the incident because of `linked_episode_id` (an earlier member), by
-- `reason` (the link type: temporal, trace, semantic) with confidence `weight` (0..1). The root
-- episode of an incident has one row with reason 'root' and an empty `linked_episode_id`.
ALTER TABLE incident_links ADD COLUMN linked_episode_id text NOT NULL DEFAULT '';
ALTER TABLE incident_links ADD COLUMN time_ns bigint NOT NULL DEFAULT 0;
ALTER TABLE incident_links DROP CONSTRAINT incident_links_pkey;
ALTER TABLE incident_links ADD PRIMARY KEY (incident_id, episode_id, linked_episode_id, reason);

-- For queries: the sources involved, the event time of the last change, and what an incident
-- was merged into (empty unless it was absorbed by another).
ALTER TABLE incidents ADD COLUMN sources text[] NOT NULL DEFAULT '{}';
ALTER TABLE incidents ADD COLUMN time_ns bigint NOT NULL DEFAULT 0;
ALTER TABLE incidents ADD COLUMN merged_into text NOT NULL DEFAULT '';
CREATE INDEX incidents_sources ON incidents USING gin (sources);
CREATE INDEX incidents_time ON incidents (time_ns);
CREATE INDEX incident_links_linked ON incident_links (linked_episode_id);
