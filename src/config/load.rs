//! The files a configuration names (the `[server.tls]` certificate and key,
//! the `[admin]` token, the `[auth]` keys and CA files, the `[cluster]`
//! password and CA), read in a step of their own after validation.
//!
//! Validation is pure: it yields a [`Config<Unread>`](super::Config) in which
//! each file-backed value is the place in the text that named the file.
//! [`load`] reads the files and yields the [`Config`](super::Config) the
//! server runs, reporting a file it cannot use at the key that named it.
//! Every reload goes through both steps again, so renewed certificates and a
//! rotated token are picked up.
//!
//! The `[auth]` files are the exception to "read once here": the settings
//! keep their paths, and the server's authenticator reads the keys when it
//! is built (at start and at every reload). They are read here as well, and
//! thrown away, so that a missing or unusable key file is reported at its
//! key by `wsedge check` and refuses a reload, instead of failing later
//! without a line to point at. Where each was named travels beside the
//! configuration, in [`AuthFiles`].

use std::{fmt, ops::Range, path::Path};

use rustls_pki_types::{CertificateDer, pem::PemObject};
use tokio_rustls::rustls::RootCertStore;

use super::{
    AdminSettings, AdminToken, ClusterConfig, ClusterFileSpans, Config, ServerSettings,
    TlsSettings, report::Scope,
};
use crate::{
    auth::{self, Algorithm, AuthSettings, Subject},
    cluster::{Password, TlsRoots, default_node_name},
    tls::{Identity, TlsError},
};

/// How far a configuration has come: validated with its files unread
/// (`Unread`, inside the crate), or with their contents loaded ([`Loaded`],
/// what [`Config::from_file`](super::Config::from_file) returns).
///
/// Each file-backed value is one associated type: where it was named at the
/// `Unread` stage, what was read at the `Loaded` one.
pub trait Stage: sealed::Sealed + Clone + fmt::Debug + PartialEq + Eq {
    /// What `[server.tls]` holds for its `cert` and `key` files.
    type Identity: Clone + fmt::Debug;
    /// What `[admin]` holds for its `token_file`.
    type Token: Clone + fmt::Debug + PartialEq + Eq;
    /// What `[cluster]` holds for its `password_file` and `ca_file` beyond
    /// the link settings they are read into.
    type ClusterFiles: Clone + fmt::Debug + PartialEq + Eq;
}

mod sealed {
    /// Only this module's stages exist.
    pub trait Sealed {}
}

/// Files read: the certificate and key as an [`Identity`], the token as an
/// [`AdminToken`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loaded;

impl sealed::Sealed for Loaded {}

impl Stage for Loaded {
    type Identity = Identity;
    type Token = AdminToken;
    type ClusterFiles = ();
}

/// Validated, files unread: each file-backed value is where the file was
/// named, so that [`load`] can report a file it cannot use there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unread;

impl sealed::Sealed for Unread {}

impl Stage for Unread {
    type Identity = PemSpans;
    type Token = Range<usize>;
    type ClusterFiles = ClusterFileSpans;
}

/// Where the `cert` and `key` values were written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PemSpans {
    pub(crate) cert: Range<usize>,
    pub(crate) key: Range<usize>,
}

/// Where `[auth]` named the files that [`load`] checks.
#[derive(Debug, Default)]
pub(crate) struct AuthFiles {
    /// The `[auth]` table, for what has no key of its own.
    pub(crate) table: Range<usize>,
    /// One entry per JWT key source, in the order of the settings' sources:
    /// the value that named its file (a JWKS URL's `ca_file`).
    pub(crate) keys: Vec<Named>,
    /// The accepted algorithms, where each is listed.
    pub(crate) algorithms: Vec<(Algorithm, Range<usize>)>,
    /// Whether a key source was written but left out (reported by
    /// validation): an algorithm without a key may then be missing only
    /// that one, and is not reported again.
    pub(crate) keys_left_out: bool,
    /// The `[auth.webhook]` `ca_file`.
    pub(crate) webhook_ca_file: Option<Range<usize>>,
}

/// A value and its key, relative to `[auth]`.
#[derive(Debug, Clone)]
pub(crate) struct Named {
    pub(crate) span: Range<usize>,
    pub(crate) key: &'static str,
}

impl Named {
    pub(crate) fn new(span: Range<usize>, key: &'static str) -> Self {
        Self { span, key }
    }
}

/// Reads the files `config` names. A file that cannot be used is reported in
/// `root` and its table left out (the `[auth]` settings are kept: they hold
/// paths, not contents); the caller discards a configuration with errors.
pub(super) fn load(
    config: Config<Unread>,
    auth_files: &AuthFiles,
    root: &mut Scope<'_, '_>,
) -> Config {
    let Config {
        server,
        admission,
        limits,
        channels,
        admin,
        auth,
        cluster,
        warnings,
    } = config;
    let tls = server
        .tls
        .and_then(|tls| identity(tls, &mut root.table("server.tls")));
    let server = ServerSettings {
        listen: server.listen,
        plain: server.plain,
        proxy_protocol: server.proxy_protocol,
        trusted_proxies: server.trusted_proxies,
        handshake_timeout: server.handshake_timeout,
        drain_window: server.drain_window,
        shutdown_timeout: server.shutdown_timeout,
        tls,
    };
    let admin = admin.and_then(|admin| token(admin, &mut root.table("admin")));
    if let Some(settings) = &auth {
        check_auth(settings, auth_files, &mut root.table("auth"));
    }
    let cluster = cluster.and_then(|cluster| cluster_files(cluster, &mut root.table("cluster")));
    Config {
        server,
        admission,
        limits,
        channels,
        admin,
        auth,
        cluster,
        warnings,
    }
}

/// Reads the Redis password and CA file, and names the node when the table
/// does not.
fn cluster_files(
    cluster: ClusterConfig<Unread>,
    scope: &mut Scope<'_, '_>,
) -> Option<ClusterConfig> {
    let ClusterConfig {
        mut settings,
        url,
        node_name,
        password_file,
        ca_file,
        files,
    } = cluster;
    if let (Some(file), Some(span)) = (&password_file, files.password) {
        let fill = "put the Redis password (`requirepass`, or the ACL user's) in it";
        let text = read_secret(file, span, "password_file", fill, scope)?;
        settings.password = Some(Password::new(&text));
    }
    if let (Some(file), Some(span)) = (&ca_file, files.ca) {
        let mut roots = RootCertStore::empty();
        let added = CertificateDer::pem_file_iter(file)
            .map_err(|error| error.to_string())
            .and_then(|certs| {
                certs
                    .map(|cert| {
                        let cert = cert.map_err(|error| error.to_string())?;
                        roots.add(cert).map_err(|error| error.to_string())
                    })
                    .collect::<Result<Vec<()>, String>>()
            });
        match added {
            Ok(certs) if !certs.is_empty() => settings.tls_roots = TlsRoots::Custom(roots.into()),
            Ok(_) => {
                scope.error(
                    span,
                    "ca_file",
                    format!(
                        "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                        file.display()
                    ),
                );
                return None;
            }
            Err(error) => {
                scope.error(
                    span,
                    "ca_file",
                    format!("cannot use {}: {error}", file.display()),
                );
                return None;
            }
        }
    }
    if node_name.is_none() {
        settings.node_name = default_node_name();
    }
    Some(ClusterConfig {
        settings,
        url,
        node_name,
        password_file,
        ca_file,
        files: (),
    })
}

/// Loads the certificate chain and key, checked as a pair.
fn identity(tls: TlsSettings<Unread>, scope: &mut Scope<'_, '_>) -> Option<TlsSettings> {
    match tls {
        TlsSettings::SelfSigned { names } => Some(TlsSettings::SelfSigned { names }),
        TlsSettings::Files {
            cert,
            key,
            identity: spans,
        } => match Identity::from_pem_files(&cert, &key) {
            Ok(identity) => Some(TlsSettings::Files {
                cert,
                key,
                identity,
            }),
            Err(error) => {
                let (span, name) = match error {
                    TlsError::Key { .. } => (spans.key, "key"),
                    _ => (spans.cert, "cert"),
                };
                scope.error(span, name, error.to_string());
                None
            }
        },
    }
}

/// Reads a file that holds a secret (a token, a password): its text, or an
/// error at `key` when it cannot be read or holds only whitespace (`fill`
/// says what belongs in it).
fn read_secret(
    file: &Path,
    span: Range<usize>,
    key: &str,
    fill: &str,
    scope: &mut Scope<'_, '_>,
) -> Option<String> {
    match std::fs::read_to_string(file) {
        Ok(text) if !text.trim().is_empty() => Some(text),
        Ok(_) => {
            scope.error(span, key, format!("{} is empty; {fill}", file.display()));
            None
        }
        Err(error) => {
            scope.error(
                span,
                key,
                format!("cannot read {}: {error}", file.display()),
            );
            None
        }
    }
}

/// Reads the bearer token, surrounding whitespace trimmed.
fn token(admin: AdminSettings<Unread>, scope: &mut Scope<'_, '_>) -> Option<AdminSettings> {
    let token = match (&admin.token_file, admin.token) {
        (Some(file), Some(span)) => {
            let fill = "put a long random token in it (for example `openssl rand -hex 32`)";
            let text = read_secret(file, span, "token_file", fill, scope)?;
            Some(AdminToken(text.trim().to_owned()))
        }
        _ => None,
    };
    Some(AdminSettings {
        listen: admin.listen,
        token_file: admin.token_file,
        token,
    })
}

/// Reads the key and CA files of `[auth]` and reports each problem at the
/// key that named the file (or the algorithm that no key verifies).
fn check_auth(settings: &AuthSettings, files: &AuthFiles, scope: &mut Scope<'_, '_>) {
    for (subject, error) in auth::check_files(settings) {
        if files.keys_left_out && matches!(subject, Subject::Algorithm(_)) {
            continue;
        }
        let at = match subject {
            Subject::Key(index) => files.keys.get(index).cloned(),
            Subject::Algorithm(alg) => files
                .algorithms
                .iter()
                .find(|(listed, _)| *listed == alg)
                .map(|(_, span)| Named::new(span.clone(), "algorithms")),
            Subject::WebhookCaFile => files
                .webhook_ca_file
                .clone()
                .map(|span| Named::new(span, "webhook.ca_file")),
        };
        // Validation records every file it passes on; the table is where a
        // problem would land if it did not.
        let at = at.unwrap_or_else(|| Named::new(files.table.clone(), ""));
        scope.error(at.span, at.key, error.to_string());
    }
}
