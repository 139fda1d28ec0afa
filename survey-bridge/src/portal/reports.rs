//! The routes that read reports (HTML, CSV, JSON: the same numbers); the activity log and
//! the usage export are in `exports.rs`. Each decides from the signed-in account what it may show; asking
//! for anything else answers 404, as if it did not exist.
//!
//! Reports cover released periods only (`period=2026-11`, `2026-Q4` or `2026`; by default
//! the latest released quarter), never free ranges of months nor the live month, and every
//! number in them, in the usage export too, is derived from released units
//! ([`crate::report::release`]): providers and site administrators read units of one
//! provider's month, analysts units of one site's month.
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

use super::{
    Portal, Session, Shared,
    released::{self, Structure, Unit},
    unavailable,
};
use crate::{
    accounts::{Role, encode},
    db::{Db, DbError},
    html::{escape, tr},
    periods::Period,
    questionnaire::Lang,
    report::{
        self, AnswerRow, Cell, Level, PeriodRow, RawCounts, ReportLinks,
        release::{self, Derived, UnitCells},
    },
};

/// What a report request may say; the account decides what it may see.
#[derive(Debug, Deserialize, Default)]
pub struct ReportQuery {
    campaign: Option<String>,
    period: Option<String>,
    /// Free ranges are refused: named here only to say so.
    from: Option<String>,
    /// Free ranges are refused: named here only to say so.
    to: Option<String>,
    site: Option<String>,
    provider: Option<String>,
    lang: Option<String>,
}

pub(super) fn not_found() -> Response {
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

impl Portal {
    /// Where this portal's released units come from.
    pub(super) fn units(&self) -> released::Units<'_> {
        released::Units {
            db: &self.db,
            q: &self.questionnaire,
            k: self.config.min_cell,
            noise: self.noise.as_ref(),
        }
    }
}

/// How `account`'s reports cut populations into units.
pub(super) fn structure_of(role: Role) -> Structure {
    match role {
        Role::Provider | Role::SiteAdmin => Structure::Provider,
        Role::Analyst => Structure::Site,
    }
}

/// The released period asked for (the latest released quarter by default), or the 400
/// that names what is wrong.
fn period_of(portal: &Portal, query: &ReportQuery) -> Result<Period, Response> {
    if query.from.is_some() || query.to.is_some() {
        return Err(bad_request(
            "from, to: reports cover released periods only; ask for period=2026-11, 2026-Q4 or 2026",
        ));
    }
    let settle = portal.config.settle_days;
    let period = match query.period.as_deref().filter(|p| !p.is_empty()) {
        Some(text) => Period::parse(text).map_err(|err| bad_request(&format!("period: {err}")))?,
        None => {
            let latest = crate::periods::latest_released_month(portal.clock.now(), settle);
            let month = Period::month(&latest).ok_or_else(unavailable)?;
            // The latest quarter released whole, else the one before it.
            let quarter = month.parent().ok_or_else(unavailable)?;
            if quarter.released(portal.clock.now(), settle) {
                quarter
            } else {
                let first = quarter.months().first().cloned().unwrap_or_default();
                let before = crate::periods::month_index(&first).map(|i| crate::periods::month_at(i - 1));
                before.as_deref().and_then(Period::month).and_then(Period::parent).ok_or_else(unavailable)?
            }
        }
    };
    if !period.released(portal.clock.now(), settle) {
        return Err(bad_request(&format!(
            "period: {period} is not released yet; a month is released {settle} days after it ends"
        )));
    }
    Ok(period)
}

/// The units of a population over `period`, month by month.
async fn units_by_month(
    portal: &Portal,
    structure: Structure,
    campaign: &str,
    period: Period,
    site: Option<&str>,
    provider: Option<&str>,
) -> Result<Vec<(String, Vec<Unit>)>, DbError> {
    let mut months = Vec::new();
    for month in period.months() {
        let units = portal.units().of(structure, campaign, &month, site, provider).await?;
        months.push((month, units));
    }
    Ok(months)
}

/// All sites' units over `period`, cut so that they never overlap the reader's own units:
/// the reader's site in the reader's `structure`, every other site whole (the analysts'
/// units). A site's whole unit beside its providers' units would give away, by subtraction,
/// the cells a provider's unit withholds.
async fn all_units(
    portal: &Portal,
    structure: Structure,
    campaign: &str,
    period: Period,
    own_site: Option<&str>,
) -> Result<Vec<(String, Vec<Unit>)>, DbError> {
    let mut months = units_by_month(portal, Structure::Site, campaign, period, None, None).await?;
    if let (Structure::Provider, Some(own)) = (structure, own_site) {
        let own_units = units_by_month(portal, structure, campaign, period, Some(own), None).await?;
        for ((_, units), (_, own_units)) in months.iter_mut().zip(own_units) {
            units.retain(|(site, _, _)| site != own);
            units.extend(own_units);
        }
    }
    Ok(months)
}

/// Per question, the top-box share of some units over the whole period.
fn top_boxes(
    q: &crate::questionnaire::Questionnaire,
    months: &[(String, Vec<Unit>)],
    k: u64,
) -> Vec<Cell<f64>> {
    let every: Vec<&UnitCells> = months.iter().flat_map(|(_, units)| units.iter().map(|u| &u.2)).collect();
    (0..q.questions.len()).map(|qi| release::top_box_share(&every, qi, k)).collect()
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
    let period = match period_of(&portal, &query) {
        Ok(period) => period,
        Err(response) => return response,
    };
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
    let structure = structure_of(session.account.role);
    let k = portal.config.min_cell;
    let q = &portal.questionnaire;
    let counts = async {
        let scope =
            units_by_month(&portal, structure, &campaign, period, site.as_deref(), provider.as_deref())
                .await?;
        // The site compared with a provider: the same structure, the whole site.
        let site_shares = match (level, site.as_deref()) {
            (Level::Provider, Some(site)) => {
                let units = units_by_month(&portal, structure, &campaign, period, Some(site), None).await?;
                Some(top_boxes(q, &units, k))
            }
            _ => None,
        };
        // All sites compared with a provider or a site.
        let all_shares = match level {
            Level::All => None,
            _ => {
                let units = all_units(&portal, structure, &campaign, period, site.as_deref()).await?;
                Some(top_boxes(q, &units, k))
            }
        };
        Ok::<_, DbError>((scope, site_shares, all_shares))
    };
    let (scope_units, site_shares, all_shares) = match counts.await {
        Ok(counts) => counts,
        Err(err) => {
            error!(cause = %err, "report read failed");
            return unavailable();
        }
    };
    let months = scope_units
        .iter()
        .map(|(month, units)| (month.clone(), units.iter().map(|u| &u.2).collect()))
        .collect();
    let report = release::derive(
        q,
        &Derived {
            level,
            site_id: site.clone(),
            provider_id: provider.clone(),
            campaign_id: campaign.clone(),
            period: period.to_string(),
            k,
            months,
            site: site_shares,
            all: all_shares,
        },
    );
    let detail = format!(
        "{} {}{} campaign {campaign} {period}",
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
            let params = link_params(&campaign, &period.to_string(), site.as_deref(), provider.as_deref());
            let links = ReportLinks {
                csv: format!("/reports/report.csv?{params}"),
                json: format!("/reports/report.json?{params}"),
                switch_lang: format!("/reports?{params}&lang={}", lang.other().as_str()),
            };
            let page = report::render_html(&report, &portal.questionnaire, lang, &links);
            let page =
                with_periods(&page, &portal, period, &campaign, site.as_deref(), provider.as_deref(), lang);
            Html(with_nav(&portal, &session, lang, &page)).into_response()
        }
    }
}

/// Links to the other released periods around `period`: its parts, its parent, the one
/// before and after; inserted before the page's `<main>`.
fn with_periods(
    page: &str,
    portal: &Portal,
    period: Period,
    campaign: &str,
    site: Option<&str>,
    provider: Option<&str>,
    lang: Lang,
) -> String {
    let now = portal.clock.now();
    let settle = portal.config.settle_days;
    let mut around: Vec<Period> = Vec::new();
    around.extend(period.parent());
    match period {
        Period::Year { year } => around.extend((1..=4).map(|quarter| Period::Quarter { year, quarter })),
        Period::Quarter { .. } => around.extend(period.months().iter().filter_map(|m| Period::month(m))),
        Period::Month { .. } => {}
    }
    let links: Vec<String> = around
        .into_iter()
        .filter(|p| p.released(now, settle))
        .map(|p| {
            let params = link_params(campaign, &p.to_string(), site, provider);
            format!("<a href=\"/reports?{params}&amp;lang={}\">{p}</a>", lang.as_str())
        })
        .collect();
    if links.is_empty() {
        return page.to_string();
    }
    let nav = format!(
        "<nav class=\"periods\" aria-label=\"{}\">{}</nav>\n",
        tr(lang, "Other periods", "Autres périodes"),
        links.join(" ")
    );
    match page.find("<main") {
        Some(at) => format!("{}{nav}{}", &page[..at], &page[at..]),
        None => format!("{nav}{page}"),
    }
}

fn link_params(campaign: &str, period: &str, site: Option<&str>, provider: Option<&str>) -> String {
    let mut params = format!("campaign={}&period={}", encode(campaign), encode(period));
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
    let mut page = crate::html::portal_head(lang, tr(lang, "Reports", "Rapports"));
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
