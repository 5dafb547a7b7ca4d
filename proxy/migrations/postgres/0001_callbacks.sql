-- qys-proxy callback store on PostgreSQL: the tables of the SQLite backend (store/sqlite.rs).
-- Applied once, in a transaction holding the migration lock (store/postgres/migrate.rs).
-- Times are Unix milliseconds (BIGINT), as in SQLite. Bodies are BYTEA: a form body may hold a
-- NUL byte, which TEXT refuses.

-- Well-formed deliveries, one row per dedup_key (retries raise `deliveries`).
CREATE TABLE callbacks (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind TEXT NOT NULL,
    dedup_key TEXT NOT NULL UNIQUE,
    query TEXT NOT NULL,
    body BYTEA NOT NULL,
    received_at BIGINT NOT NULL,
    deliveries BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX callbacks_received_at ON callbacks (received_at);

-- Malformed deliveries: a counter per (UTC day, kind, class) ...
CREATE TABLE malformed_counts (
    day BIGINT NOT NULL,
    kind TEXT NOT NULL,
    class TEXT NOT NULL,
    count BIGINT NOT NULL,
    last_at BIGINT NOT NULL,
    PRIMARY KEY (day, kind, class)
);

-- ... and a ring of the last SAMPLE_SLOTS (100) of them, slot = seq % 100. `seq` comes from a
-- sequence (instances insert concurrently; MAX(seq) + 1 would hand two of them one number).
CREATE SEQUENCE malformed_seq AS BIGINT;
CREATE TABLE malformed_samples (
    slot BIGINT PRIMARY KEY,
    seq BIGINT NOT NULL,
    kind TEXT NOT NULL,
    class TEXT NOT NULL,
    reason TEXT NOT NULL,
    source TEXT NOT NULL,
    content_type TEXT NOT NULL,
    query TEXT NOT NULL,
    body BYTEA NOT NULL,
    body_len BIGINT NOT NULL,
    received_at BIGINT NOT NULL
);
CREATE INDEX malformed_samples_received_at ON malformed_samples (received_at);
