//! The monitoring files in `contrib/` against what a real server exports:
//! every `wsedge_*` metric the Grafana dashboard and the Prometheus rules
//! (and their unit tests) name is a series `/metrics` serves, under the name
//! Prometheus stores (`_total` on counters, `_info` on info metrics,
//! `_bucket`/`_sum`/`_count` on histograms, never the bare family name), and
//! every label a selector matches on is one that series carries, with a
//! value it takes. The server runs `config.example.toml` and is exercised
//! until its labelled families have samples. promtool's syntax checks and
//! the rules' unit tests are in `.ci/contrib`.

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use common::{AdminServer, close_and_wait, eventually, example_config, next_data, send_text};

/// Labels Prometheus attaches at scrape time, not part of the exposition.
const TARGET_LABELS: [&str; 2] = ["instance", "job"];

/// What `/metrics` serves: sample names with the values of each label, and
/// the family names of `# TYPE` lines.
#[derive(Debug, Default)]
struct Exposition {
    samples: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
    families: BTreeSet<String>,
}

impl Exposition {
    fn parse(text: &str) -> Self {
        let mut exposition = Self::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let family = rest.split(' ').next().unwrap();
                exposition.families.insert(family.to_owned());
            } else if !line.starts_with('#') && !line.is_empty() {
                let name_end = line.find(['{', ' ']).unwrap_or(line.len());
                let labels = exposition
                    .samples
                    .entry(line[..name_end].to_owned())
                    .or_default();
                if line[name_end..].starts_with('{') {
                    let (matchers, _) = parse_matchers(&line[name_end + 1..])
                        .unwrap_or_else(|e| panic!("bad exposition line {line:?}: {e}"));
                    for matcher in matchers {
                        labels
                            .entry(matcher.label)
                            .or_default()
                            .insert(matcher.value);
                    }
                }
            }
        }
        exposition
    }

    /// Why `used` would find no series, if it would not.
    fn problem(&self, used: &Use) -> Option<String> {
        let Some(labels) = self.samples.get(&used.name) else {
            let hint = if self.families.contains(&used.name) {
                let stored: Vec<_> = self
                    .samples
                    .keys()
                    .filter(|sample| {
                        sample
                            .strip_prefix(used.name.as_str())
                            .is_some_and(|suffix| suffix.starts_with('_'))
                    })
                    .collect();
                format!(" (a metric family; Prometheus stores it as {stored:?})")
            } else {
                String::new()
            };
            return Some(format!("{} is not exported{hint}", used.name));
        };
        for matcher in &used.matchers {
            if TARGET_LABELS.contains(&matcher.label.as_str()) {
                continue;
            }
            let Some(values) = labels.get(&matcher.label) else {
                return Some(format!(
                    "{} has no label {:?} (it has {:?})",
                    used.name,
                    matcher.label,
                    labels.keys().collect::<Vec<_>>()
                ));
            };
            for value in matcher.literal_values() {
                if !values.contains(value) {
                    return Some(format!(
                        "{}{{{}=...}} never takes the value {value:?} (it takes {values:?})",
                        used.name, matcher.label
                    ));
                }
            }
        }
        None
    }
}

/// One label matcher of a selector or of an exposition line.
#[derive(Debug, PartialEq)]
struct Matcher {
    label: String,
    op: String,
    value: String,
}

impl Matcher {
    /// The values a matcher names literally: the value of `=`, or each
    /// alternative of a `=~` made only of plain words (`a|b`). Regular
    /// expressions, negative matchers and Grafana variables name none.
    fn literal_values(&self) -> Vec<&str> {
        let plain = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        };
        match self.op.as_str() {
            "=" if !self.value.contains('$') => vec![self.value.as_str()],
            "=~" if self.value.split('|').all(plain) => self.value.split('|').collect(),
            _ => Vec::new(),
        }
    }
}

/// Parses `label op "value", ...}` (after the opening brace) and returns
/// the matchers and the rest after the closing brace.
fn parse_matchers(mut text: &str) -> Result<(Vec<Matcher>, &str), String> {
    let mut matchers = Vec::new();
    loop {
        text = text.trim_start_matches([' ', ',']);
        if let Some(rest) = text.strip_prefix('}') {
            return Ok((matchers, rest));
        }
        let label_end = text
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .ok_or("unterminated selector")?;
        let label = text[..label_end].to_owned();
        text = text[label_end..].trim_start();
        let op = ["=~", "!~", "!=", "="]
            .into_iter()
            .find(|op| text.starts_with(op))
            .ok_or_else(|| format!("no operator after {label:?}"))?;
        text = text[op.len()..].trim_start();
        let quote = text
            .chars()
            .next()
            .filter(|c| ['"', '\'', '`'].contains(c))
            .ok_or_else(|| format!("no quoted value for {label:?}"))?;
        let mut value = String::new();
        let mut chars = text[1..].char_indices();
        let end = loop {
            match chars.next().ok_or("unterminated value")? {
                (i, c) if c == quote => break i,
                (_, '\\') => {
                    let (_, escaped) = chars.next().ok_or("unterminated escape")?;
                    value.push(if escaped == 'n' { '\n' } else { escaped });
                }
                (_, c) => value.push(c),
            }
        };
        text = &text[1 + end + 1..];
        matchers.push(Matcher {
            label,
            op: op.to_owned(),
            value,
        });
    }
}

/// A metric name used in a file, with the matchers of its selector.
#[derive(Debug)]
struct Use {
    name: String,
    matchers: Vec<Matcher>,
}

/// Every `wsedge_*` name in `text` (starting at an identifier boundary),
/// with the matchers of the selector that follows it, if any.
fn uses_in(text: &str) -> Result<Vec<Use>, String> {
    const PREFIX: &str = "wsedge_";
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut uses = Vec::new();
    let mut from = 0;
    while let Some(found) = text[from..].find(PREFIX) {
        let start = from + found;
        from = start + PREFIX.len();
        if text[..start].chars().next_back().is_some_and(is_ident) {
            continue;
        }
        let end = text[start..]
            .find(|c: char| !is_ident(c))
            .map_or(text.len(), |n| start + n);
        let name = &text[start..end];
        if name.len() == PREFIX.len() {
            return Err(format!(
                "{PREFIX} without a metric name in {:?}",
                &text[start..]
            ));
        }
        let mut matchers = Vec::new();
        if let Some(selector) = text[end..].strip_prefix('{') {
            matchers = parse_matchers(selector)
                .map_err(|e| format!("selector of {name}: {e}"))?
                .0;
        }
        uses.push(Use {
            name: name.to_owned(),
            matchers,
        });
        from = end;
    }
    Ok(uses)
}

/// Every string in a JSON document (keys are the dashboard's schema, not queries).
fn json_strings(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(items) => items.iter().for_each(|v| json_strings(v, out)),
        serde_json::Value::Object(map) => map.values().for_each(|v| json_strings(v, out)),
        _ => {}
    }
}

/// The monitoring files: `contrib/*.json` and `contrib/*.yml`.
fn contrib_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.extension()
                .is_some_and(|extension| extension == "json" || extension == "yml")
        })
        .collect();
    files.sort();
    files
}

/// The metric uses of one file: in a JSON file those in its string values
/// (unescaped), in a YAML file anywhere in its text.
fn file_uses(path: &Path) -> Vec<Use> {
    let text = std::fs::read_to_string(path).unwrap();
    let texts = if path
        .extension()
        .is_some_and(|extension| extension == "json")
    {
        let document: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
        let mut strings = Vec::new();
        json_strings(&document, &mut strings);
        strings
    } else {
        vec![text]
    };
    texts
        .iter()
        .flat_map(|text| uses_in(text).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .collect()
}

/// Traffic through every channel kind of the example configuration, then
/// closed connections: the disconnect counter has no series before the
/// first close (the other labelled families list every label value from
/// the start).
async fn exercise(server: &AdminServer) {
    let mut echo = server.ws("/echo").await;
    send_text(&mut echo, "ping").await;
    assert_eq!(next_data(&mut echo).await.into_text().unwrap(), "ping");
    let mut reader = server.ws("/news").await;
    let mut writer = server.ws("/news").await;
    send_text(&mut writer, "headline").await;
    assert_eq!(
        next_data(&mut reader).await.into_text().unwrap(),
        "headline"
    );
    let mut alice = server.ws("/chat/lobby").await;
    let mut bob = server.ws("/chat/lobby").await;
    send_text(&mut bob, "hi").await;
    assert_eq!(next_data(&mut alice).await.into_text().unwrap(), "hi");
    for ws in [echo, reader, writer, alice, bob] {
        close_and_wait(ws).await;
    }
    eventually(&server.handle, |stats| {
        stats.connections == 0 && !stats.traffic.disconnects.is_empty()
    })
    .await;
}

#[tokio::test]
async fn every_metric_the_contrib_files_use_is_exported() {
    let server = common::start_with_admin(&example_config()).await;
    exercise(&server).await;
    let answer = server.admin_get("/metrics").await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let exposition = Exposition::parse(&answer.body);
    assert!(
        exposition.samples.len() >= 20,
        "too few series in:\n{}",
        answer.body
    );

    let files = contrib_files();
    let names: Vec<_> = files
        .iter()
        .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for expected in [
        "grafana-dashboard.json",
        "prometheus-rules.yml",
        "prometheus-rules.test.yml",
    ] {
        assert!(
            names.iter().any(|name| name == expected),
            "contrib/{expected} is missing; found {names:?}"
        );
    }
    let mut problems = Vec::new();
    for path in &files {
        let uses = file_uses(path);
        assert!(
            uses.len() >= 5,
            "{} names only {} wsedge metrics",
            path.display(),
            uses.len()
        );
        let distinct: BTreeSet<_> = uses.iter().map(|used| used.name.as_str()).collect();
        println!(
            "{}: {} uses of {} metrics",
            path.display(),
            uses.len(),
            distinct.len()
        );
        problems.extend(
            uses.iter()
                .filter_map(|used| exposition.problem(used))
                .map(|problem| format!("{}: {problem}", path.display())),
        );
    }
    problems.dedup();
    assert!(
        problems.is_empty(),
        "contrib/ uses what /metrics does not serve:\n{}\n--- /metrics\n{}",
        problems.join("\n"),
        answer.body
    );
}

/// The checker itself, on a fixed exposition: it accepts what is served and
/// names what is not.
#[test]
fn the_check_tells_served_series_from_the_rest() {
    let exposition = Exposition::parse(
        "# TYPE wsedge_handshakes counter\n\
         wsedge_handshakes_total{result=\"accepted\",reason=\"none\"} 1\n\
         wsedge_handshakes_total{result=\"rejected\",reason=\"rate_limit\"} 0\n\
         # TYPE wsedge_build info\n\
         wsedge_build_info{version=\"0.1.0\"} 1\n\
         # TYPE wsedge_latency_seconds histogram\n\
         wsedge_latency_seconds_bucket{le=\"+Inf\"} 3\n\
         wsedge_latency_seconds_sum 0.5\n\
         wsedge_latency_seconds_count 3\n\
         # EOF\n",
    );
    let check = |query: &str| -> Vec<Option<String>> {
        uses_in(query)
            .unwrap()
            .iter()
            .map(|used| exposition.problem(used))
            .collect()
    };
    assert_eq!(
        check(
            r#"sum by (instance) (rate(wsedge_handshakes_total{instance=~"$instance", reason=~"rate_limit|none"}[5m]))"#
        ),
        [None]
    );
    assert_eq!(check("wsedge_build_info"), [None]);
    assert_eq!(
        check(
            "histogram_quantile(0.99, rate(wsedge_latency_seconds_bucket[5m])) / wsedge_latency_seconds_count"
        ),
        [None, None]
    );
    let family = check("rate(wsedge_handshakes[5m])");
    assert!(
        family[0]
            .as_deref()
            .unwrap()
            .contains("stores it as [\"wsedge_handshakes_total\"]"),
        "{family:?}"
    );
    assert!(check("wsedge_latency_seconds")[0].is_some());
    assert!(check("wsedge_build")[0].is_some());
    assert!(check("wsedge_connections_active")[0].is_some());
    let label = check(r#"wsedge_handshakes_total{code="1000"}"#);
    assert!(label[0].as_deref().unwrap().contains("no label \"code\""));
    let value = check(r#"wsedge_handshakes_total{reason="rate_limits"}"#);
    assert!(value[0].as_deref().unwrap().contains("\"rate_limits\""));
    let alternative = check(r#"wsedge_handshakes_total{reason=~"none|tls"}"#);
    assert!(alternative[0].as_deref().unwrap().contains("\"tls\""));
    // Not metric names: another prefix, or part of a longer identifier.
    assert!(
        uses_in("my_wsedge_thing and WsedgeDown and job=\"wsedge\"")
            .unwrap()
            .is_empty()
    );
    assert!(uses_in("the wsedge_* metrics").is_err());
}
