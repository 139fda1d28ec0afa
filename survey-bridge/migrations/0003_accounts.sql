-- Accounts of providers, site administrators and analysts who read reports; their
-- sessions; and the activity log (sign-ins, second-factor events, report views, exports,
-- account changes). Nothing here concerns a patient.

CREATE TABLE accounts (
    username      TEXT   NOT NULL PRIMARY KEY,
    role          TEXT   NOT NULL,   -- provider | site_admin | analyst
    site_id       TEXT,              -- provider, site_admin: their site
    provider_id   TEXT,              -- provider: their id
    password_hash TEXT   NOT NULL,   -- argon2id PHC string
    totp_nonce    TEXT,              -- the TOTP secret is HMAC(key, nonce): never stored
    totp_enrolled BIGINT NOT NULL,   -- 0 until the first code is confirmed
    totp_last_step BIGINT NOT NULL,  -- a code's time step is accepted once
    failures      BIGINT NOT NULL,   -- failed sign-ins since the last success
    locked_until  BIGINT NOT NULL,   -- unix seconds
    disabled      BIGINT NOT NULL,
    created_at    BIGINT NOT NULL
);

CREATE TABLE sessions (
    token_hash TEXT   NOT NULL PRIMARY KEY,  -- SHA-256 of the cookie's token
    username   TEXT   NOT NULL,
    stage      TEXT   NOT NULL,              -- password | enrol | full
    expires_at BIGINT NOT NULL
);

CREATE TABLE activity (
    at       BIGINT NOT NULL,
    site_id  TEXT,
    username TEXT   NOT NULL,
    action   TEXT   NOT NULL,
    result   TEXT   NOT NULL,
    detail   TEXT
);
CREATE INDEX activity_by_site ON activity (site_id, at);
