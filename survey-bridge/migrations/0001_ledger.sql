-- The invitation ledger and the anonymous aggregates. Portable between SQLite and
-- PostgreSQL: TEXT and BIGINT only, upserts with ON CONFLICT.
--
-- No table holds a GUID beside an answer: invitations know a GUID only as an HMAC and hold
-- no answers; answer_counts hold answers only as counts, with no GUID and no time finer
-- than the month.

CREATE TABLE invitations (
    guid_hmac   TEXT   NOT NULL PRIMARY KEY,
    site_id     TEXT   NOT NULL,
    provider_id TEXT   NOT NULL,
    campaign_id TEXT   NOT NULL,
    channel     TEXT   NOT NULL,
    language    TEXT   NOT NULL,
    month       TEXT   NOT NULL,   -- YYYY-MM (UTC) of sending: the month answers count under
    expires_at  BIGINT NOT NULL,   -- unix seconds
    state       TEXT   NOT NULL    -- invited | responded | declined
);

CREATE TABLE answer_counts (
    site_id     TEXT   NOT NULL,
    provider_id TEXT   NOT NULL,
    campaign_id TEXT   NOT NULL,
    month       TEXT   NOT NULL,
    question    TEXT   NOT NULL,
    answer      TEXT   NOT NULL,
    responses   BIGINT NOT NULL,
    PRIMARY KEY (site_id, provider_id, campaign_id, month, question, answer)
);

CREATE TABLE period_counts (
    site_id     TEXT   NOT NULL,
    provider_id TEXT   NOT NULL,
    campaign_id TEXT   NOT NULL,
    month       TEXT   NOT NULL,
    invitations BIGINT NOT NULL,
    responses   BIGINT NOT NULL,
    opt_outs    BIGINT NOT NULL,
    PRIMARY KEY (site_id, provider_id, campaign_id, month)
);
