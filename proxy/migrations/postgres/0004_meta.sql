-- Facts about the database itself, one row each. `sigs_required_since` (Unix ms): when the first
-- instance of a version whose callback URLs carry `sig` started on this database; a delivery
-- without `sig` is stored only when its flow token was issued before it (the URLs of older
-- versions). Inserted if absent by every instance at start, so the first one's moment stays.
-- Additive: an older instance during a rolling upgrade ignores it.
CREATE TABLE meta (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
