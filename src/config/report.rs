//! Where validation writes what it finds.
//!
//! A [`Report`] collects the errors and warnings of one source text. Each
//! table's validation sees it through a [`Scope`], which carries the key path
//! of that table (`channel[2].limits`), so the table's code names its keys
//! relative to itself (`max_payload`) and never builds a key path by hand.

use std::ops::Range;

use super::error::{ConfigIssue, Issues};

/// The errors and warnings found in one source text.
pub(crate) struct Report<'s> {
    errors: Issues<'s>,
    warnings: Issues<'s>,
}

impl<'s> Report<'s> {
    /// An empty report for `source`, read from `file`.
    pub(crate) fn new(file: &'s str, source: &'s str) -> Self {
        Self {
            errors: Issues::new(file, source),
            warnings: Issues::new(file, source),
        }
    }

    /// The whole file: keys named from here are top-level keys.
    pub(crate) fn root(&mut self) -> Scope<'_, 's> {
        Scope {
            report: self,
            prefix: String::new(),
        }
    }

    /// Whether any error was reported.
    pub(crate) fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// The errors and the warnings, each in file order.
    pub(crate) fn into_issues(self) -> (Vec<ConfigIssue>, Vec<ConfigIssue>) {
        (self.errors.into_vec(), self.warnings.into_vec())
    }
}

/// The report seen from one table: keys are named relative to it.
pub(crate) struct Scope<'r, 's> {
    report: &'r mut Report<'s>,
    /// The table's key path, empty for the whole file.
    prefix: String,
}

impl<'s> Scope<'_, 's> {
    /// The sub-table `name` of this table (`name` may be dotted, such as
    /// `server.tls`).
    pub(crate) fn table(&mut self, name: &str) -> Scope<'_, 's> {
        let prefix = self.key(name);
        Scope {
            report: self.report,
            prefix,
        }
    }

    /// Entry `index` of the array of tables `name`, such as `channel[2]`.
    pub(crate) fn entry(&mut self, name: &str, index: usize) -> Scope<'_, 's> {
        let prefix = format!("{}[{index}]", self.key(name));
        Scope {
            report: self.report,
            prefix,
        }
    }

    /// The full key path of `name` in this table; the table's own path when
    /// `name` is empty.
    pub(crate) fn key(&self, name: &str) -> String {
        match (self.prefix.is_empty(), name.is_empty()) {
            (_, true) => self.prefix.clone(),
            (true, false) => name.to_owned(),
            (false, false) => format!("{}.{name}", self.prefix),
        }
    }

    /// An error at `span`, about the key `name` of this table (the table
    /// itself when `name` is empty).
    pub(crate) fn error(&mut self, span: Range<usize>, name: &str, message: impl Into<String>) {
        let key = self.key(name);
        self.report.errors.push(span, key, message);
    }

    /// A warning at `span`, about the key `name` of this table.
    pub(crate) fn warning(&mut self, span: Range<usize>, name: &str, message: impl Into<String>) {
        let key = self.key(name);
        self.report.warnings.push(span, key, message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE: &str = "[server]\nplain = []\n[[channel]]\nname = \"x\"\n";

    /// Where each issue is and what key it names: `line:column key message`.
    fn located(issues: &[ConfigIssue]) -> Vec<String> {
        issues
            .iter()
            .map(|i| format!("{}:{} {} {}", i.line, i.column, i.key, i.message))
            .collect()
    }

    #[test]
    fn keys_are_named_relative_to_the_scope() {
        let mut report = Report::new("f.toml", SOURCE);
        let mut root = report.root();
        assert_eq!(root.key("server"), "server");
        assert_eq!(root.key(""), "");
        let mut channel = root.entry("channel", 2);
        assert_eq!(channel.key(""), "channel[2]");
        assert_eq!(channel.key("name"), "channel[2].name");
        let limits = channel.table("limits");
        assert_eq!(limits.key("max_payload"), "channel[2].limits.max_payload");
        assert_eq!(
            limits.key("message_rate.burst"),
            "channel[2].limits.message_rate.burst"
        );
        assert_eq!(
            root.table("server.tls").key("cert"),
            "server.tls.cert",
            "a dotted table name is one step down two tables"
        );
        assert_eq!(root.table("limits").entry("x", 0).key(""), "limits.x[0]");
    }

    #[test]
    fn errors_and_warnings_land_at_their_spans_with_full_keys() {
        let mut report = Report::new("f.toml", SOURCE);
        let mut root = report.root();
        // Pushed out of file order, from nested scopes and the root.
        root.entry("channel", 0).error(32..36, "name", "not a name");
        root.table("server").error(0..8, "", "no listener");
        root.table("server").warning(9..14, "plain", "unencrypted");
        root.error(0..0, "toml", "whole file");
        assert!(report.has_errors());
        let (errors, warnings) = report.into_issues();
        assert_eq!(
            located(&errors),
            [
                "1:1 server no listener",
                "1:1 toml whole file",
                "4:1 channel[0].name not a name"
            ],
            "every error, in file order"
        );
        assert_eq!(located(&warnings), ["2:1 server.plain unencrypted"]);
        assert_eq!(errors[0].file, "f.toml");
    }

    #[test]
    fn a_report_without_errors_says_so_even_with_warnings() {
        let mut report = Report::new("f.toml", SOURCE);
        report.root().table("server").warning(9..14, "plain", "w");
        assert!(!report.has_errors());
    }
}
