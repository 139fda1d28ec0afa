//! The bridge's HTTPS routes put together: the patient pages ([`pages`]), the unsubscribe
//! page ([`unsubscribe`]), `POST /results` when the webhook is configured ([`results`]), the
//! reports ([`crate::portal`]) and the probes ([`crate::probes`]), with the security headers
//! on every response.

use std::sync::Arc;

use axum::{Router, extract::DefaultBodyLimit, http::HeaderValue, middleware};

use crate::{
    pages::{self, Pages},
    results::{self, Webhook},
    unsubscribe,
};

/// Every route of the HTTPS port.
pub fn router(pages: Pages, webhook: Option<Webhook>, portal: Router, probes: Router) -> Router {
    let csp = HeaderValue::try_from(pages::csp(&pages.campaigns))
        .unwrap_or_else(|_| HeaderValue::from_static(pages::CSP));
    let mut routes =
        pages::routes().merge(unsubscribe::routes()).with_state(Arc::new(pages)).merge(portal).merge(probes);
    if let Some(webhook) = webhook {
        let limit = webhook.max_body_bytes;
        routes = routes.route(
            "/results",
            axum::routing::post(results::receive)
                .with_state(Arc::new(webhook))
                .layer(DefaultBodyLimit::max(limit)),
        );
    }
    routes.layer(middleware::from_fn_with_state(csp, pages::security_headers))
}
