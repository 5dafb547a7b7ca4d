-- The forwarding outbox (issue 9): one entry per callback (same id), shared by every instance on
-- this database. Forwarders claim due entries with FOR UPDATE SKIP LOCKED and hold them by a
-- lease (owner, locked_until); see the CallbackBackend contract in store.rs.
CREATE TABLE outbox (
    id BIGINT PRIMARY KEY REFERENCES callbacks (id) ON DELETE CASCADE,
    state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts BIGINT NOT NULL DEFAULT 0,
    next_at BIGINT NOT NULL,
    enqueued_at BIGINT NOT NULL,
    owner TEXT NOT NULL DEFAULT '',
    locked_until BIGINT NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    payload TEXT,
    finished_at BIGINT
);
-- The claim's scan: pending entries by due time.
CREATE INDEX outbox_due ON outbox (next_at, id) WHERE state = 'pending';
-- Listing by state, and the lease release of a stopping forwarder.
CREATE INDEX outbox_state ON outbox (state, id);
CREATE INDEX outbox_owner ON outbox (owner) WHERE owner <> '';
