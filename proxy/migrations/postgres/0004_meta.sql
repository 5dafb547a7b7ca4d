-- Facts about the database itself, one row each. `sigs_required_since` (Unix ms): when the first
-- instance of a version whose callback URLs carry `sig` started on this database; a delivery
-- without `sig` is stored only when its flow token was issued before it (the URLs of older
-- versions). Inserted if absent by every instance at start, so the first one's moment stays;
-- `qys-proxy callbacks require-sigs --at` moves it. Additive, so the schema is safe to share with
-- older instances, but their callback URLs are not: a flow an older instance starts after the
-- moment gets an unsigned URL whose callbacks are counted, not stored, until the moment is moved
-- past the last old instance's stop (README, "Upgrading from a version without sig").
CREATE TABLE meta (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
