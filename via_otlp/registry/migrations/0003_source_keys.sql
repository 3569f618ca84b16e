-- Facts about the stored data that plain SQL migrations cannot establish on their own, such as
-- the format of the source keys in every table (moved by via_otlp/registry/rekey.py).
CREATE TABLE registry_meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);
