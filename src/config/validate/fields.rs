//! Readers for the kinds of value several tables share: durations, sizes,
//! counts, keywords, paths. Each one reports a bad value at its span, under
//! the key `name` of the scope it is given, and falls back so that
//! validation goes on.

use std::{
    ops::{Range, RangeInclusive},
    path::{Path, PathBuf},
    time::Duration,
};

use toml::Spanned;

use crate::config::{
    keyword::{self, Keyword, Word},
    report::Scope,
    units,
};

/// A validated value and where it was written.
pub(super) struct Located<T> {
    pub(super) value: T,
    pub(super) span: Range<usize>,
}

/// A duration longer than zero; `default` when absent or bad.
pub(super) fn duration(
    field: Option<&Spanned<String>>,
    name: &str,
    default: Duration,
    scope: &mut Scope<'_, '_>,
) -> Duration {
    match (field, duration_or_zero(field, name, default, scope)) {
        (Some(text), value) if value.is_zero() => {
            scope.error(text.span(), name, "must be longer than zero");
            default
        }
        (_, value) => value,
    }
}

/// A duration, zero included (a tolerance that may be none); `default` when
/// absent or bad.
pub(super) fn duration_or_zero(
    field: Option<&Spanned<String>>,
    name: &str,
    default: Duration,
    scope: &mut Scope<'_, '_>,
) -> Duration {
    let Some(text) = field else { return default };
    units::parse_duration(text.get_ref()).unwrap_or_else(|message| {
        scope.error(text.span(), name, message);
        default
    })
}

/// A size of at least one byte; `default` when absent or bad.
pub(super) fn size(
    field: Option<&Spanned<String>>,
    name: &str,
    default: usize,
    scope: &mut Scope<'_, '_>,
) -> usize {
    let Some(text) = field else { return default };
    match units::parse_size(text.get_ref()) {
        Ok(0) => {
            scope.error(text.span(), name, "must be at least 1B");
            default
        }
        Ok(value) => value,
        Err(message) => {
            scope.error(text.span(), name, message);
            default
        }
    }
}

/// A whole number within `range`; `default` when absent or bad.
pub(super) fn count(
    field: Option<&Spanned<i64>>,
    name: &str,
    default: usize,
    range: RangeInclusive<usize>,
    scope: &mut Scope<'_, '_>,
) -> usize {
    let Some(value) = field else { return default };
    match usize::try_from(*value.get_ref()) {
        Ok(n) if range.contains(&n) => n,
        _ => {
            scope.error(
                value.span(),
                name,
                format!(
                    "{} is out of range; use a whole number from {} to {}",
                    value.get_ref(),
                    range.start(),
                    range.end()
                ),
            );
            default
        }
    }
}

/// A keyword; `None` when absent, or when unknown (reported with the valid
/// words).
pub(super) fn keyword<T: Keyword>(
    field: Option<&Spanned<Word<T>>>,
    name: &str,
    scope: &mut Scope<'_, '_>,
) -> Option<T> {
    match field?.get_ref() {
        Word::Known(word) => Some(*word),
        Word::Unknown(text) => {
            scope.error(field?.span(), name, keyword::unknown::<T>(text));
            None
        }
    }
}

/// Reports `name` missing from the table written at `table`.
pub(super) fn require<T>(
    field: Option<&Spanned<T>>,
    table: &Range<usize>,
    name: &str,
    hint: &str,
    scope: &mut Scope<'_, '_>,
) {
    if field.is_none() {
        scope.error(table.clone(), name, format!("missing `{name}`; {hint}"));
    }
}

/// `path` resolved against `base_dir` (absolute, so the result is too and
/// print-config's output loads from anywhere).
pub(super) fn resolve(base_dir: &Path, path: &str) -> PathBuf {
    let joined = base_dir.join(path);
    std::path::absolute(&joined).unwrap_or(joined)
}

/// Whether `text` is an HTTP token (RFC 9110 section 5.6.2): what a
/// subprotocol, a header name or a cookie name is made of.
pub(super) fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// The span of a value, if it was written.
pub(super) fn span<T>(field: &Option<Spanned<T>>) -> Option<Range<usize>> {
    field.as_ref().map(Spanned::span)
}
