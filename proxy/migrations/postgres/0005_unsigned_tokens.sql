-- Deliveries stored per flow token through a callback URL without `sig` (an older version's):
-- `token` is the hex SHA-256 of the kind and the URL's `t`, `stored` how many distinct ones were
-- stored under it; a new one past UNSIGNED_PER_TOKEN (store.rs) is counted as `unsigned`, not
-- stored. Additive: an older instance ignores it.
CREATE TABLE unsigned_tokens (
    token TEXT PRIMARY KEY,
    stored BIGINT NOT NULL
);
