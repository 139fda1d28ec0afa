-- Released report units (survey-bridge/src/report/release.rs): one population's month (a
-- provider at a site, or a site), its table protected on its own by the small-cell rules
-- when first read after the month's release, and never changed afterwards. Every report is
-- derived from these: a sum is shown only when every unit cell in it is.
CREATE TABLE released_units (
    structure   TEXT NOT NULL,   -- provider | site
    site_id     TEXT NOT NULL,
    provider_id TEXT NOT NULL,   -- '' in the site structure
    campaign_id TEXT NOT NULL,
    month       TEXT NOT NULL,   -- YYYY-MM, released
    cells       TEXT NOT NULL,   -- JSON: the unit's cells, null where withheld
    PRIMARY KEY (structure, site_id, provider_id, campaign_id, month)
);
