//! The exports: a site administrator's activity log and the usage figures (per site and
//! released month, derived from released units like the reports).

#![allow(clippy::result_large_err)]

use axum::{
    extract::State,
    http::{HeaderMap, header},
    response::{IntoResponse, Response},
};
use sqlx::Row;
use tracing::error;

use super::{
    Portal, Shared,
    released::Structure,
    reports::{not_found, structure_of},
    unavailable,
};
use crate::{
    accounts::Role,
    db::DbError,
    report::{
        self,
        release::{self, UnitCells},
    },
};

fn csv_response(name: &str, rows: Vec<Vec<String>>) -> Response {
    let mut writer = csv::Writer::from_writer(Vec::new());
    for row in rows {
        if writer.write_record(&row).is_err() {
            return unavailable();
        }
    }
    let Ok(bytes) = writer.into_inner() else { return unavailable() };
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
        ],
        bytes,
    )
        .into_response()
}

/// `GET /reports/activity.csv`: a site administrator's export of their site's activity log.
pub async fn activity(State(portal): State<Shared>, headers: HeaderMap) -> Response {
    let session = match portal.signed_in(&headers).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    let (Role::SiteAdmin, Some(site)) = (session.account.role, session.account.site_id.clone()) else {
        return not_found();
    };
    // The export is itself activity, and appears in it.
    if let Err(response) = portal.log(Some(&session.account), "ACTIVITY_EXPORT", "ok", None).await {
        return response;
    }
    let entries = match portal.db.activity(Some(&site)).await {
        Ok(entries) => entries,
        Err(err) => {
            error!(cause = %err, "activity read failed");
            return unavailable();
        }
    };
    let mut rows = vec![["time", "site", "user", "action", "result", "detail"].map(String::from).to_vec()];
    for entry in entries {
        let time = jiff::Timestamp::from_second(entry.at).map(|t| t.to_string()).unwrap_or_default();
        rows.push(vec![
            time,
            entry.site_id.unwrap_or_default(),
            entry.username,
            entry.action,
            entry.result,
            entry.detail.unwrap_or_default(),
        ]);
    }
    csv_response("activity.csv", rows)
}

/// `GET /reports/usage.csv`: per site and released month, invitations, responses and
/// opt-outs, small or revealing counts suppressed as in the reports; a site administrator's
/// site, or every site for an analyst.
pub async fn usage(State(portal): State<Shared>, headers: HeaderMap) -> Response {
    let session = match portal.signed_in(&headers).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    let site = match session.account.role {
        Role::Provider => return not_found(),
        Role::SiteAdmin => match session.account.site_id.clone() {
            Some(site) => site,
            None => return not_found(),
        },
        Role::Analyst => String::new(),
    };
    if let Err(response) = portal.log(Some(&session.account), "USAGE_EXPORT", "ok", None).await {
        return response;
    }
    match usage_rows(&portal, structure_of(session.account.role), &site).await {
        Ok(rows) => csv_response("usage.csv", rows),
        Err(err) => {
            error!(cause = %err, "usage read failed");
            unavailable()
        }
    }
}

/// Per site and released month: invitations, responses and opt-outs, each the sum of the
/// account's released units across providers and campaigns, shown only when every part is.
async fn usage_rows(portal: &Portal, structure: Structure, site: &str) -> Result<Vec<Vec<String>>, DbError> {
    let keys = sqlx::query(
        "SELECT DISTINCT site_id, month, campaign_id FROM period_counts WHERE ($1 = '' OR site_id = $1) \
         ORDER BY site_id, month, campaign_id",
    )
    .bind(site)
    .fetch_all(portal.db.pool())
    .await?;
    let (now, settle, k) = (portal.clock.now(), portal.config.settle_days, portal.config.min_cell);
    let mut sums: std::collections::BTreeMap<(String, String), Vec<UnitCells>> =
        std::collections::BTreeMap::new();
    for key in keys {
        let (site_id, month, campaign): (String, String, String) =
            (key.try_get(0)?, key.try_get(1)?, key.try_get(2)?);
        if !crate::periods::month_released(&month, now, settle) {
            continue;
        }
        let units = portal.units().of(structure, &campaign, &month, Some(&site_id), None).await?;
        sums.entry((site_id, month)).or_default().extend(units.into_iter().map(|u| u.2));
    }
    let mut out = vec![["site", "month", "invitations", "responses", "opt_outs"].map(String::from).to_vec()];
    for ((site_id, month), units) in sums {
        let refs: Vec<&UnitCells> = units.iter().collect();
        let t = release::totals(&refs, k);
        let text = |cell: Option<u64>| cell.map_or_else(|| report::SUPPRESSED.to_string(), |v| v.to_string());
        out.push(vec![site_id, month, text(t.invitations), text(t.responses), text(t.opt_outs)]);
    }
    Ok(out)
}
