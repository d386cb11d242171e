//! Configuration errors that point at the file, line, column and key.

use std::{fmt, io, ops::Range, path::PathBuf};

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration file {}", path.display())]
    Read {
        /// The path that was given.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The file was read but is not a valid configuration. Every problem
    /// found is listed, not only the first.
    #[error("{}", render(issues))]
    Invalid {
        /// Each problem, in file order.
        issues: Vec<ConfigIssue>,
    },
}

impl ConfigError {
    /// The problems found, empty when the file could not be read at all.
    pub fn issues(&self) -> &[ConfigIssue] {
        match self {
            Self::Read { .. } => &[],
            Self::Invalid { issues } => issues,
        }
    }
}

fn render(issues: &[ConfigIssue]) -> String {
    let lines: Vec<String> = issues.iter().map(ConfigIssue::to_string).collect();
    lines.join("\n")
}

/// One problem (or warning) in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// The file name, or `<string>` for configuration given as text.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// The key path, such as `channel[2].path`.
    pub key: String,
    /// What is wrong and what would be valid.
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file, self.line, self.column, self.key, self.message
        )
    }
}

/// Collects issues found while validating one source text, turning byte
/// spans into line and column.
pub(crate) struct Issues<'s> {
    file: &'s str,
    source: &'s str,
    found: Vec<ConfigIssue>,
}

impl<'s> Issues<'s> {
    pub(crate) fn new(file: &'s str, source: &'s str) -> Self {
        Self {
            file,
            source,
            found: Vec::new(),
        }
    }

    /// Records a problem at `span` for `key`.
    pub(crate) fn push(
        &mut self,
        span: Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) {
        let before = &self.source[..span.start.min(self.source.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        self.found.push(ConfigIssue {
            file: self.file.to_owned(),
            line,
            column,
            key: key.into(),
            message: message.into(),
        });
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    pub(crate) fn into_vec(mut self) -> Vec<ConfigIssue> {
        self.found.sort_by_key(|issue| (issue.line, issue.column));
        self.found
    }
}
