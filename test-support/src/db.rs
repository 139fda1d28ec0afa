//! The databases a storage test runs against.

use std::path::Path;

use sqlx::Connection;

/// A new SQLite file `<dir>/<name>.db`, and a new PostgreSQL database `<name>_<uuid>` when
/// `BRIDGE_TEST_POSTGRES_URL` names a server (an admin URL, e.g. `.../postgres`).
///
/// CI sets it, and sets `BRIDGE_REQUIRE_POSTGRES=1` so that its absence fails rather than
/// skips. The URLs are returned in that order.
pub async fn databases(dir: &Path, name: &str) -> Vec<String> {
    let mut urls = vec![format!("sqlite://{}?mode=rwc", dir.join(format!("{name}.db")).display())];
    match std::env::var("BRIDGE_TEST_POSTGRES_URL") {
        Ok(admin) => urls.push(new_postgres_database(&admin, name).await),
        Err(_) if std::env::var("BRIDGE_REQUIRE_POSTGRES").is_ok() => {
            panic!("BRIDGE_REQUIRE_POSTGRES is set but BRIDGE_TEST_POSTGRES_URL is not")
        }
        Err(_) => eprintln!("BRIDGE_TEST_POSTGRES_URL not set: PostgreSQL not tested here"),
    }
    urls
}

/// Creates the database `<prefix>_<uuid>` on the server of `admin`; returns its URL.
async fn new_postgres_database(admin: &str, prefix: &str) -> String {
    let mut conn = sqlx::PgConnection::connect(admin).await.expect("the PostgreSQL admin URL");
    let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    sqlx::Executor::execute(&mut conn, sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .expect("CREATE DATABASE");
    let (base, _) = admin.rsplit_once('/').expect("a URL ending in /<database>");
    format!("{base}/{name}")
}
