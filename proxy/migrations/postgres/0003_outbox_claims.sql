-- The claim number of an outbox entry's lease (see the CallbackBackend contract in store.rs):
-- each claim adds one, and renewing, failing or parking the entry checks it with the owner, so
-- an instance's earlier attempt whose lease ran out cannot act on the entry it claimed again.
-- Additive: an older instance during a rolling upgrade leaves it alone (its claims change the
-- owner or the number, and either makes the other attempt's checks fail).
ALTER TABLE outbox ADD COLUMN claims BIGINT NOT NULL DEFAULT 0;
