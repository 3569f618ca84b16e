-- Which instance recorded an episode, so that after a crash an instance reconciles its own open
-- episodes with the state it restored, and leaves those of other instances sharing the
-- database alone. Rows written before this version have '' (an embedded registry serves one
-- instance, so there they are its own).
ALTER TABLE anomalies ADD COLUMN instance text NOT NULL DEFAULT '';
CREATE INDEX anomalies_open ON anomalies (instance, started_ns) WHERE state <> 'resolved';
CREATE INDEX anomalies_instance_time ON anomalies (instance, time_ns);
