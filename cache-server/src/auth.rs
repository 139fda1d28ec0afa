//! Who is calling, and what they may call.
//!
//! Callers are identified by their client certificate (mutual TLS, signed by the CA in
//! `tls.client_ca`). The certificate carries exactly one URI subject alternative name of the
//! form `spiffe://contactcache/<role>[/<site>]`:
//!
//! - `spiffe://contactcache/emr/<site-id>`: an EMR connector for one site,
//! - `spiffe://contactcache/outreach`: the outreach worker,
//! - `spiffe://contactcache/bridge`: the survey bridge,
//! - `spiffe://contactcache/admin`: an operator.
//!
//! The caller's name in the audit log is the certificate's common name (or the URI when it
//! has none). [`POLICY`] is the one table of which role may call which RPC; everything not
//! in it is denied.

use std::fmt;

use x509_parser::{extensions::GeneralName, prelude::FromDer};

use crate::validate;

/// The URI prefix of a caller identity.
pub const IDENTITY_PREFIX: &str = "spiffe://contactcache/";

/// What a caller is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// An EMR connector, for one site.
    Emr,
    /// The outreach worker.
    Outreach,
    /// The survey bridge.
    Bridge,
    /// An operator.
    Admin,
}

impl Role {
    /// Every role, for tests and tables.
    pub const ALL: [Role; 4] = [Role::Emr, Role::Outreach, Role::Bridge, Role::Admin];

    /// The role's name as it appears in identities and the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Emr => "emr",
            Role::Outreach => "outreach",
            Role::Bridge => "bridge",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Caller {
    /// The certificate's common name, or its identity URI.
    pub name: String,
    /// What it is for.
    pub role: Role,
    /// The site of an EMR connector; none for other roles.
    pub site: Option<String>,
}

/// The client certificate did not name a caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The client sent no certificate.
    #[error("no client certificate")]
    NoCertificate,
    /// The certificate could not be parsed.
    #[error("the client certificate does not parse")]
    Unparsable,
    /// No `spiffe://contactcache/...` URI.
    #[error("the client certificate names no contactcache role")]
    NoIdentity,
    /// More than one identity URI.
    #[error("the client certificate names more than one contactcache identity")]
    Ambiguous,
    /// A URI of the right prefix but an unknown role or a bad site.
    #[error("the client certificate's contactcache identity is not valid")]
    Invalid,
}

/// Parses an identity URI: `spiffe://contactcache/<role>[/<site>]`.
pub fn parse_identity(uri: &str) -> Result<(Role, Option<String>), IdentityError> {
    let rest = uri.strip_prefix(IDENTITY_PREFIX).ok_or(IdentityError::NoIdentity)?;
    match rest.split('/').collect::<Vec<_>>().as_slice() {
        ["emr", site] => {
            validate::id("site", site).map_err(|_| IdentityError::Invalid)?;
            Ok((Role::Emr, Some((*site).to_string())))
        }
        ["outreach"] => Ok((Role::Outreach, None)),
        ["bridge"] => Ok((Role::Bridge, None)),
        ["admin"] => Ok((Role::Admin, None)),
        _ => Err(IdentityError::Invalid),
    }
}

/// The identity URI for `role` (and `site`, for an EMR connector).
pub fn identity_uri(role: Role, site: Option<&str>) -> String {
    match site {
        Some(site) => format!("{IDENTITY_PREFIX}{role}/{site}"),
        None => format!("{IDENTITY_PREFIX}{role}"),
    }
}

/// The caller named by a DER client certificate.
pub fn caller_from_certificate(der: &[u8]) -> Result<Caller, IdentityError> {
    let (_, cert) =
        x509_parser::certificate::X509Certificate::from_der(der).map_err(|_| IdentityError::Unparsable)?;
    let san = cert.subject_alternative_name().map_err(|_| IdentityError::Unparsable)?;
    let mut identities =
        san.iter().flat_map(|san| san.value.general_names.iter()).filter_map(|name| match name {
            GeneralName::URI(uri) if uri.starts_with(IDENTITY_PREFIX) => Some(*uri),
            _ => None,
        });
    let uri = identities.next().ok_or(IdentityError::NoIdentity)?;
    if identities.next().is_some() {
        return Err(IdentityError::Ambiguous);
    }
    let (role, site) = parse_identity(uri)?;
    let name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .filter(|cn| !cn.is_empty() && cn.len() <= 128 && cn.chars().all(|c| !c.is_control()))
        .unwrap_or(uri)
        .to_string();
    Ok(Caller { name, role, site })
}

/// An RPC of `contactcache.v1.ContactCache`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rpc {
    /// `PutContact`.
    PutContact,
    /// `PutContacts`.
    PutContacts,
    /// `GetContact`.
    GetContact,
    /// `DeleteContact`.
    DeleteContact,
    /// `OptOut`.
    OptOut,
    /// `Stats`.
    Stats,
    /// `LeaseDue`.
    LeaseDue,
    /// `Ack`.
    Ack,
}

impl Rpc {
    /// Every RPC, for tests and tables.
    pub const ALL: [Rpc; 8] = [
        Rpc::PutContact,
        Rpc::PutContacts,
        Rpc::GetContact,
        Rpc::DeleteContact,
        Rpc::OptOut,
        Rpc::Stats,
        Rpc::LeaseDue,
        Rpc::Ack,
    ];

    /// The RPC's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Rpc::PutContact => "PutContact",
            Rpc::PutContacts => "PutContacts",
            Rpc::GetContact => "GetContact",
            Rpc::DeleteContact => "DeleteContact",
            Rpc::OptOut => "OptOut",
            Rpc::Stats => "Stats",
            Rpc::LeaseDue => "LeaseDue",
            Rpc::Ack => "Ack",
        }
    }
}

/// Which roles may call each RPC. Anything not listed is denied.
///
/// An EMR connector acts only within its own site: it may store contacts for its site only,
/// and a GUID of another site is NOT_FOUND to it.
pub const POLICY: &[(Rpc, &[Role])] = &[
    (Rpc::PutContact, &[Role::Emr]),
    (Rpc::PutContacts, &[Role::Emr]),
    (Rpc::GetContact, &[Role::Outreach]),
    (Rpc::DeleteContact, &[Role::Emr]),
    (Rpc::OptOut, &[Role::Bridge]),
    (Rpc::Stats, &[Role::Admin]),
    (Rpc::LeaseDue, &[Role::Outreach]),
    (Rpc::Ack, &[Role::Outreach]),
];

/// Whether `role` may call `rpc`.
pub fn allowed(role: Role, rpc: Rpc) -> bool {
    POLICY.iter().any(|(r, roles)| *r == rpc && roles.contains(&role))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_parse() {
        assert_eq!(
            parse_identity("spiffe://contactcache/emr/site-1001").unwrap(),
            (Role::Emr, Some("site-1001".into()))
        );
        assert_eq!(parse_identity("spiffe://contactcache/outreach").unwrap(), (Role::Outreach, None));
        for bad in [
            "spiffe://contactcache/emr",
            "spiffe://contactcache/emr/",
            "spiffe://contactcache/emr/a b",
            "spiffe://contactcache/root",
            "spiffe://contactcache/admin/x",
            "spiffe://other/admin",
        ] {
            assert!(parse_identity(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_rpc_has_exactly_one_policy_row() {
        for rpc in Rpc::ALL {
            assert_eq!(POLICY.iter().filter(|(r, _)| *r == rpc).count(), 1, "{rpc:?}");
        }
    }
}
