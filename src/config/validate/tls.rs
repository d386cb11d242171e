//! `[server.tls]`: either PEM files (read later, by the load step) or the
//! names of an in-memory development certificate.

use std::path::Path;

use toml::Spanned;

use super::fields;
use crate::config::{
    TlsSettings,
    load::{PemSpans, Unread},
    raw::RawTls,
    report::Scope,
};

/// Validates `[server.tls]`; `None` (reported) when it names no usable
/// source. `scope` is the table's.
pub(super) fn validate(
    raw: Spanned<RawTls>,
    base_dir: &Path,
    scope: &mut Scope<'_, '_>,
) -> Option<TlsSettings<Unread>> {
    let span = raw.span();
    let raw = raw.into_inner();
    match (raw.cert, raw.key, raw.self_signed) {
        (None, None, Some(names)) => {
            let names_span = names.span();
            let names: Vec<String> = names
                .into_inner()
                .into_iter()
                .map(Spanned::into_inner)
                .collect();
            if names.is_empty() || names.iter().any(|n| n.trim().is_empty()) {
                scope.error(names_span, "self_signed", "list the host names or IP addresses the certificate is for, such as [\"localhost\", \"127.0.0.1\"]");
                return None;
            }
            Some(TlsSettings::SelfSigned { names })
        }
        (Some(cert), Some(key), None) => Some(TlsSettings::Files {
            cert: fields::resolve(base_dir, cert.get_ref()),
            key: fields::resolve(base_dir, key.get_ref()),
            identity: PemSpans {
                cert: cert.span(),
                key: key.span(),
            },
        }),
        (_, _, Some(names)) => {
            scope.error(names.span(), "self_signed", "`self_signed` generates a certificate and cannot be combined with `cert`/`key`; keep one or the other");
            None
        }
        _ => {
            scope.error(span, "", "set both `cert` and `key` (PEM files), or `self_signed = [\"localhost\"]` for development");
            None
        }
    }
}
