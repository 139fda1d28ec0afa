-- The contacts of messages sent, remembered by GUID for as long as their link works, so
-- that an opt-out that comes after the cache has erased the contact (the bridge's
-- PendingOptOuts) can still put it on the suppression list. Portable between SQLite and
-- PostgreSQL: TEXT and BIGINT only, upserts with ON CONFLICT.
--
-- guid_hmac is the HMAC-SHA256, under the suppression key, of "guid:" + the GUID; entries
-- are the contact's suppression entries exactly as they would go into suppressions (hex
-- HMACs, comma-joined). No GUID, phone or email is stored. A row is deleted once its opt-out
-- is handled, or at forget_at (sent + worker.remember_days).

CREATE TABLE sent_contacts (
    guid_hmac TEXT   NOT NULL PRIMARY KEY,
    entries   TEXT   NOT NULL,
    forget_at BIGINT NOT NULL   -- unix seconds
);
CREATE INDEX sent_contacts_by_forget_at ON sent_contacts (forget_at);
