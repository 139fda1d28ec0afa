-- Opt-outs waiting for the outreach worker (PendingOptOuts / ConfirmOptOuts). The cache
-- erases a contact once its last message is sent, so an opt-out that comes later cannot
-- reach the worker through the cache: the worker asks for these GUIDs instead, to suppress
-- the contact it remembered at sending. The raw GUID is what the worker remembers it by,
-- so it is kept here (beside nothing else about the patient, and never beside an answer)
-- until the worker confirms it, or link_valid_days + 1 days after it was queued.
CREATE TABLE worker_opt_outs (
    guid      TEXT   NOT NULL PRIMARY KEY,
    queued_at BIGINT NOT NULL   -- unix seconds
);
CREATE INDEX worker_opt_outs_by_age ON worker_opt_outs (queued_at);
