//! The routes that read: the report (HTML, CSV, JSON: the same numbers), the activity log
//! and the usage export. Each decides from the signed-in account what it may show; asking
//! for anything else answers 404, as if it did not exist.
//!
//! | role | report | activity log | usage |
//! |---|---|---|---|
//! | provider | their own (site + provider) | - | - |
//! | site_admin | their site, or one of its providers | their site's | their site's |
//! | analyst | all sites, or one site | - | every site's |

#![allow(clippy::result_large_err)]

use axum::{
    extract::{Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{Html, IntoResponse, Response},
};
use serde::Deserialize;
use sqlx::Row;
use tracing::error;

use super::{Portal, Session, Shared, unavailable};
use crate::{
    accounts::{Role, encode},
    db::{Db, DbError},
    html::{escape, tr},
    questionnaire::Lang,
    report::{self, AnswerRow, Level, PeriodRow, RawCounts, ReportLinks, ReportRequest},
};

/// What a report request may say; the account decides what it may see.
#[derive(Debug, Deserialize, Default)]
pub struct ReportQuery {
    campaign: Option<String>,
    from: Option<String>,
    to: Option<String>,
    site: Option<String>,
    provider: Option<String>,
    lang: Option<String>,
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "no such report").into_response()
}

fn bad_request(message: &str) -> Response {
    (StatusCode::BAD_REQUEST, message.to_string()).into_response()
}

/// The level, site and provider that `account` asks for with `query`, or `None` (404).
fn scope(session: &Session, query: &ReportQuery) -> Option<(Level, Option<String>, Option<String>)> {
    let account = &session.account;
    let asked_site = query.site.as_deref().filter(|s| !s.is_empty());
    let asked_provider = query.provider.as_deref().filter(|s| !s.is_empty());
    match account.role {
        Role::Provider => {
            let (site, provider) = (account.site_id.as_deref()?, account.provider_id.as_deref()?);
            let mine = asked_site.is_none_or(|s| s == site) && asked_provider.is_none_or(|p| p == provider);
            mine.then(|| (Level::Provider, Some(site.to_string()), Some(provider.to_string())))
        }
        Role::SiteAdmin => {
            let site = account.site_id.as_deref()?;
            if asked_site.is_some_and(|s| s != site) {
                return None;
            }
            Some(match asked_provider {
                Some(provider) => (Level::Provider, Some(site.to_string()), Some(provider.to_string())),
                None => (Level::Site, Some(site.to_string()), None),
            })
        }
        Role::Analyst => match (asked_site, asked_provider) {
            (_, Some(_)) => None,
            (Some(site), None) => Some((Level::Site, Some(site.to_string()), None)),
            (None, None) => Some((Level::All, None, None)),
        },
    }
}

/// A report's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Html,
    Csv,
    Json,
}

/// `GET /reports`: the report page.
pub async fn view(
    State(portal): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<ReportQuery>,
) -> Response {
    report(portal, headers, query, Format::Html).await
}

/// `GET /reports/report.csv`.
pub async fn csv(
    State(portal): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<ReportQuery>,
) -> Response {
    report(portal, headers, query, Format::Csv).await
}

/// `GET /reports/report.json`.
pub async fn json(
    State(portal): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<ReportQuery>,
) -> Response {
    report(portal, headers, query, Format::Json).await
}

async fn report(portal: Shared, headers: HeaderMap, query: ReportQuery, format: Format) -> Response {
    let session = match portal.signed_in(&headers).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    let lang = query.lang.as_deref().and_then(Lang::parse).unwrap_or(Lang::En);
    let Some((level, site, provider)) = scope(&session, &query) else {
        let _ = portal.log(Some(&session.account), "REPORT_VIEW", "not_found", None).await;
        return not_found();
    };
    let this_month = crate::ledger::month_of(portal.clock.now());
    let to = query.to.clone().unwrap_or_else(|| this_month.clone());
    let from = query.from.clone().unwrap_or_else(|| months_before(&this_month, 11));
    let campaign = match query.campaign.clone().filter(|c| !c.is_empty()) {
        Some(campaign) => campaign,
        None => match latest_campaign(&portal.db, site.as_deref(), provider.as_deref()).await {
            Ok(Some(campaign)) => campaign,
            Ok(None) => return nothing_yet(&portal, &session, lang),
            Err(err) => {
                error!(cause = %err, "campaign read failed");
                return unavailable();
            }
        },
    };
    let request = ReportRequest {
        level,
        site_id: site.clone(),
        provider_id: provider.clone(),
        campaign_id: campaign.clone(),
        from: from.clone(),
        to: to.clone(),
        k: portal.config.min_cell,
    };
    let counts = async {
        let scope =
            raw_counts(&portal.db, &campaign, &from, &to, site.as_deref(), provider.as_deref()).await?;
        let site_counts = match (level, site.as_deref()) {
            (Level::Provider, Some(site)) => {
                Some(raw_counts(&portal.db, &campaign, &from, &to, Some(site), None).await?)
            }
            _ => None,
        };
        let all = match level {
            Level::All => None,
            _ => Some(raw_counts(&portal.db, &campaign, &from, &to, None, None).await?),
        };
        Ok::<_, DbError>((scope, site_counts, all))
    };
    let (scope_counts, site_counts, all) = match counts.await {
        Ok(counts) => counts,
        Err(err) => {
            error!(cause = %err, "report read failed");
            return unavailable();
        }
    };
    let built =
        report::build(&portal.questionnaire, &request, &scope_counts, site_counts.as_ref(), all.as_ref());
    let report = match built {
        Ok(report) => report,
        Err(err) => return bad_request(&err.to_string()),
    };
    let detail = format!(
        "{} {}{} campaign {campaign} {from}..{to}",
        level.as_str(),
        site.as_deref().unwrap_or("all"),
        provider.as_deref().map(|p| format!("/{p}")).unwrap_or_default()
    );
    let (action, detail) = match format {
        Format::Html => ("REPORT_VIEW", detail),
        Format::Csv => ("REPORT_EXPORT", format!("csv {detail}")),
        Format::Json => ("REPORT_EXPORT", format!("json {detail}")),
    };
    if let Err(response) = portal.log(Some(&session.account), action, "ok", Some(detail)).await {
        return response;
    }
    match format {
        Format::Json => {
            ([(header::CONTENT_TYPE, "application/json")], report::to_json(&report)).into_response()
        }
        Format::Csv => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (header::CONTENT_DISPOSITION, "attachment; filename=\"report.csv\""),
            ],
            report::to_csv(&report),
        )
            .into_response(),
        Format::Html => {
            let params = link_params(&campaign, &from, &to, site.as_deref(), provider.as_deref());
            let links = ReportLinks {
                csv: format!("/reports/report.csv?{params}"),
                json: format!("/reports/report.json?{params}"),
                switch_lang: format!("/reports?{params}&lang={}", lang.other().as_str()),
            };
            let page = report::render_html(&report, &portal.questionnaire, lang, &links);
            Html(with_nav(&portal, &session, lang, &page)).into_response()
        }
    }
}

/// The month `n` months before `month` (`YYYY-MM`).
fn months_before(month: &str, n: i32) -> String {
    let parsed =
        month.split_once('-').and_then(|(y, m)| Some((y.parse::<i32>().ok()?, m.parse::<i32>().ok()?)));
    let Some((year, month_number)) = parsed else { return month.to_string() };
    let index = year * 12 + (month_number - 1) - n;
    format!("{:04}-{:02}", index.div_euclid(12), index.rem_euclid(12) + 1)
}

fn link_params(campaign: &str, from: &str, to: &str, site: Option<&str>, provider: Option<&str>) -> String {
    let mut params = format!("campaign={}&from={}&to={}", encode(campaign), encode(from), encode(to));
    if let Some(site) = site {
        params.push_str(&format!("&site={}", encode(site)));
    }
    if let Some(provider) = provider {
        params.push_str(&format!("&provider={}", encode(provider)));
    }
    params
}

/// The navigation bar: who is signed in, the exports the role may take, and sign-out.
fn nav(portal: &Portal, session: &Session, lang: Lang) -> String {
    let account = &session.account;
    let mut links = String::new();
    if account.role == Role::SiteAdmin {
        links.push_str(&format!(
            "<a href=\"/reports/activity.csv\">{}</a> ",
            tr(lang, "Activity log (CSV)", "Journal d'activité (CSV)")
        ));
    }
    if account.role != Role::Provider {
        links.push_str(&format!(
            "<a href=\"/reports/usage.csv\">{}</a> ",
            tr(lang, "Usage (CSV)", "Utilisation (CSV)")
        ));
    }
    format!(
        "<nav class=\"portal\"><span>{} <strong>{}</strong> ({})</span> {links}\
         <form method=\"post\" action=\"/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <button type=\"submit\">{}</button></form></nav>\n",
        tr(lang, "Signed in as", "Connecté en tant que"),
        escape(&account.username),
        account.role.as_str(),
        escape(&portal.csrf(session)),
        tr(lang, "Sign out", "Se déconnecter"),
    )
}

fn with_nav(portal: &Portal, session: &Session, lang: Lang, page: &str) -> String {
    let nav = nav(portal, session, lang);
    match page.find("<main") {
        Some(at) => format!("{}{nav}{}", &page[..at], &page[at..]),
        None => format!("{nav}{page}"),
    }
}

fn nothing_yet(portal: &Portal, session: &Session, lang: Lang) -> Response {
    let mut page = crate::html::head(lang, tr(lang, "Reports", "Rapports"));
    page.push_str(&format!(
        "<h1>{}</h1>\n<p>{}</p>\n",
        tr(lang, "Reports", "Rapports"),
        tr(
            lang,
            "No invitations have been recorded for you yet.",
            "Aucune invitation n'a encore été enregistrée pour vous."
        )
    ));
    page.push_str(crate::html::FOOT);
    Html(with_nav(portal, session, lang, &page)).into_response()
}

/// The campaign most recently invited to in a scope.
async fn latest_campaign(
    db: &Db,
    site: Option<&str>,
    provider: Option<&str>,
) -> Result<Option<String>, DbError> {
    let row = sqlx::query(
        "SELECT campaign_id FROM period_counts \
         WHERE ($1 = '' OR site_id = $1) AND ($2 = '' OR provider_id = $2) \
         ORDER BY month DESC, campaign_id LIMIT 1",
    )
    .bind(site.unwrap_or(""))
    .bind(provider.unwrap_or(""))
    .fetch_optional(db.pool())
    .await?;
    row.map(|row| row.try_get(0)).transpose().map_err(DbError::from)
}

fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// The counts of one campaign over `from..=to`, for one provider, one site, or all.
pub async fn raw_counts(
    db: &Db,
    campaign: &str,
    from: &str,
    to: &str,
    site: Option<&str>,
    provider: Option<&str>,
) -> Result<RawCounts, DbError> {
    let filter = "campaign_id = $1 AND month >= $2 AND month <= $3 \
                  AND ($4 = '' OR site_id = $4) AND ($5 = '' OR provider_id = $5)";
    let periods = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT month, CAST(SUM(invitations) AS BIGINT), CAST(SUM(responses) AS BIGINT), \
         CAST(SUM(opt_outs) AS BIGINT) FROM period_counts WHERE {filter} GROUP BY month"
    )))
    .bind(campaign)
    .bind(from)
    .bind(to)
    .bind(site.unwrap_or(""))
    .bind(provider.unwrap_or(""))
    .fetch_all(db.pool())
    .await?;
    let answers = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT month, question, answer, CAST(SUM(responses) AS BIGINT) FROM answer_counts \
         WHERE {filter} GROUP BY month, question, answer"
    )))
    .bind(campaign)
    .bind(from)
    .bind(to)
    .bind(site.unwrap_or(""))
    .bind(provider.unwrap_or(""))
    .fetch_all(db.pool())
    .await?;
    Ok(RawCounts {
        periods: periods
            .iter()
            .map(|row| {
                Ok(PeriodRow {
                    month: row.try_get(0)?,
                    invitations: count(row.try_get(1)?),
                    responses: count(row.try_get(2)?),
                    opt_outs: count(row.try_get(3)?),
                })
            })
            .collect::<Result<_, sqlx::Error>>()?,
        answers: answers
            .iter()
            .map(|row| {
                Ok(AnswerRow {
                    month: row.try_get(0)?,
                    question: row.try_get(1)?,
                    answer: row.try_get(2)?,
                    count: count(row.try_get(3)?),
                })
            })
            .collect::<Result<_, sqlx::Error>>()?,
    })
}

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

/// `GET /reports/usage.csv`: per site and month, invitations by channel and outcome, and
/// responses and opt-outs; a site administrator's site, or every site for an analyst.
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
    match usage_rows(&portal.db, &site).await {
        Ok(rows) => csv_response("usage.csv", rows),
        Err(err) => {
            error!(cause = %err, "usage read failed");
            unavailable()
        }
    }
}

async fn usage_rows(db: &Db, site: &str) -> Result<Vec<Vec<String>>, DbError> {
    let rows = sqlx::query(
        "SELECT site_id, month, channel, \
         CAST(COUNT(*) AS BIGINT), \
         CAST(SUM(CASE WHEN state = 'responded' THEN 1 ELSE 0 END) AS BIGINT), \
         CAST(SUM(CASE WHEN state = 'declined' THEN 1 ELSE 0 END) AS BIGINT), \
         CAST(SUM(CASE WHEN state IN ('invited', 'consented') THEN 1 ELSE 0 END) AS BIGINT) \
         FROM invitations WHERE ($1 = '' OR site_id = $1) \
         GROUP BY site_id, month, channel ORDER BY site_id, month, channel",
    )
    .bind(site)
    .fetch_all(db.pool())
    .await?;
    let mut out = vec![
        ["site", "month", "channel", "invitations", "responses", "opt_outs", "no_answer_yet"]
            .map(String::from)
            .to_vec(),
    ];
    for row in rows {
        let mut line = vec![row.try_get::<String, _>(0)?, row.try_get(1)?, row.try_get(2)?];
        for at in 3..7 {
            line.push(row.try_get::<i64, _>(at)?.to_string());
        }
        out.push(line);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::months_before;

    #[test]
    fn months_count_back_across_years() {
        assert_eq!(months_before("2026-11", 11), "2025-12");
        assert_eq!(months_before("2026-01", 1), "2025-12");
        assert_eq!(months_before("2026-03", 0), "2026-03");
        assert_eq!(months_before("junk", 3), "junk");
    }
}
