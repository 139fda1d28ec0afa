-- Opt-outs waiting to reach the contact cache. The raw GUID is needed to call the cache's
-- OptOut, so it is kept here (beside nothing else about the patient, and never beside an
-- answer) until the cache has it; then the row is deleted.
CREATE TABLE opt_out_outbox (
    guid            TEXT   NOT NULL PRIMARY KEY,
    attempts        BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL   -- unix seconds
);
