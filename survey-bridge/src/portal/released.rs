//! The released units behind every report ([`crate::report::release`]), read from
//! `released_units`, or protected from the month's counts and stored there the first time
//! they are asked for (the month being released, its counts no longer change).

use sqlx::Row;

use super::reports::raw_counts;
use crate::{
    db::{Db, DbError},
    questionnaire::Questionnaire,
    report::{
        noise::Noise,
        release::{UnitCells, protect_unit},
    },
};

/// How a population is cut into units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Structure {
    /// One unit per provider at a site and month: what providers and site administrators
    /// read.
    Provider,
    /// One unit per site and month: what analysts read.
    Site,
}

impl Structure {
    fn as_str(self) -> &'static str {
        match self {
            Structure::Provider => "provider",
            Structure::Site => "site",
        }
    }
}

/// A unit: its site and provider (`""` in the site structure) and its cells.
pub type Unit = (String, String, UnitCells);

/// Where units come from: the database, the questionnaire, the small-cell threshold.
#[derive(Debug, Clone, Copy)]
pub struct Units<'a> {
    /// The counts, and the stored units.
    pub db: &'a Db,
    /// What the units' tables are about.
    pub q: &'a Questionnaire,
    /// The small-cell threshold a new unit is protected with.
    pub k: u64,
    /// The noise a new unit's counts are released with, if any.
    pub noise: Option<&'a Noise>,
}

impl Units<'_> {
    /// The units of `campaign` in `month` under `structure`, of one site or all, one
    /// provider or all; stored the first time they are read.
    pub async fn of(
        self,
        structure: Structure,
        campaign: &str,
        month: &str,
        site: Option<&str>,
        provider: Option<&str>,
    ) -> Result<Vec<Unit>, DbError> {
        let db = self.db;
        let column = match structure {
            Structure::Provider => "provider_id",
            Structure::Site => "''",
        };
        let keys = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT DISTINCT site_id, {column} FROM period_counts WHERE campaign_id = $1 AND month = $2 \
         AND ($3 = '' OR site_id = $3) AND ($4 = '' OR provider_id = $4) ORDER BY 1, 2"
        )))
        .bind(campaign)
        .bind(month)
        .bind(site.unwrap_or(""))
        .bind(provider.unwrap_or(""))
        .fetch_all(db.pool())
        .await?;
        let mut units = Vec::with_capacity(keys.len());
        for key in keys {
            let (site_id, provider_id): (String, String) = (key.try_get(0)?, key.try_get(1)?);
            let cells = self.unit(structure, campaign, month, &site_id, &provider_id).await?;
            units.push((site_id, provider_id, cells));
        }
        Ok(units)
    }

    /// One unit's cells: stored, or protected now and stored.
    async fn unit(
        self,
        structure: Structure,
        campaign: &str,
        month: &str,
        site: &str,
        provider: &str,
    ) -> Result<UnitCells, DbError> {
        let db = self.db;
        let stored = || async {
            let row = sqlx::query(
                "SELECT cells FROM released_units WHERE structure = $1 AND site_id = $2 AND provider_id = $3 \
             AND campaign_id = $4 AND month = $5",
            )
            .bind(structure.as_str())
            .bind(site)
            .bind(provider)
            .bind(campaign)
            .bind(month)
            .fetch_optional(db.pool())
            .await?;
            let cells: Option<String> = row.map(|row| row.try_get(0)).transpose()?;
            Ok::<_, DbError>(cells.and_then(|cells| serde_json::from_str::<UnitCells>(&cells).ok()))
        };
        if let Some(cells) = stored().await? {
            return Ok(cells);
        }
        let provider_filter = (structure == Structure::Provider).then_some(provider);
        let mut raw = raw_counts(db, campaign, month, month, Some(site), provider_filter).await?;
        if let Some(noise) = self.noise {
            raw = noise.apply(self.q, &raw, month).map_err(|err| DbError::Released(err.to_string()))?;
        }
        let mut cells = protect_unit(self.q, &raw, month, self.k);
        cells.noise_epsilon = self.noise.map(Noise::epsilon);
        let json = serde_json::to_string(&cells).map_err(|err| DbError::Released(err.to_string()))?;
        sqlx::query(
            "INSERT INTO released_units (structure, site_id, provider_id, campaign_id, month, cells) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (structure, site_id, provider_id, campaign_id, month) DO NOTHING",
        )
        .bind(structure.as_str())
        .bind(site)
        .bind(provider)
        .bind(campaign)
        .bind(month)
        .bind(json)
        .execute(db.pool())
        .await?;
        // Whoever stored it first wins: every reader gets the same cells.
        Ok(stored().await?.unwrap_or(cells))
    }
}
