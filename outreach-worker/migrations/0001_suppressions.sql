-- The suppression list. Portable between SQLite and PostgreSQL: TEXT only, upserts with
-- ON CONFLICT.
--
-- An entry is the HMAC-SHA256, under the worker's secret key, of "phone:" + the phone as
-- given (trimmed) or "email:" + the lower-cased trimmed email. No plaintext contact is
-- ever stored, and no time or campaign is kept beside it: an opt-out is final.

CREATE TABLE suppressions (
    entry_hmac TEXT NOT NULL PRIMARY KEY
);
