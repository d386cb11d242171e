//! Authenticated handshakes against one wsedge: unauthenticated upgrades
//! and upgrades with HS256, RS256, ES256 and EdDSA tokens, measured back to
//! back on the same server in rounds ([`auth_handshakes`]), over ws and,
//! when a TLS listener is given, over wss; writes auth.json and auth.md with
//! each algorithm's rate and server CPU per handshake and their ratios to
//! the unauthenticated upgrades of the same round.
//!
//! One server serves both: `[auth]` holds one verifier per server, but it
//! accepts several algorithms (the secret and a public key per algorithm),
//! and the token's header picks among them. The unauthenticated upgrades go
//! to a channel with `auth = "none"`, which never looks at credentials.
//!
//! Each algorithm has a pool of distinct tokens (one user each, signed
//! before the run), cycled in order: real clients each have their own
//! token, and wsedge keeps no cache of verified tokens, so every upgrade
//! pays a full verification (the scenario checks that the server counted
//! one per upgrade).

use std::{fmt::Write as _, net::SocketAddr, path::PathBuf, rc::Rc, time::Duration};

use serde::Serialize;

use crate::{
    client::Target,
    record::Record,
    report::number,
    scenarios::{Context, Credentials, auth_handshakes},
    tokens::{self, Algorithm, Claims},
};

/// The channels bench/run.sh's auth configuration serves: the same echo
/// channel kind, one open and one requiring a token.
const OPEN_PATH: &str = "/echo";
const AUTH_PATH: &str = "/echo-auth";
/// What the tokens claim, and run.sh's `[auth]` checks.
const CLAIMS: Claims<'static> = Claims {
    issuer: "wsedge-bench",
    audience: "wsedge",
    channel: "echo-auth",
    // An hour: longer than any run, so that no token expires during one.
    lifetime: Duration::from_secs(3600),
};
/// Per measurement: shorter than the quick profile's handshake window, so
/// that five rounds fit in a minute and a half; more, shorter rounds keep
/// the medians steadier on a shared machine than fewer long ones (2 s of a
/// server at half a core is still 100 clock ticks of CPU time).
const WARMUP: Duration = Duration::from_millis(300);
const DURATION: Duration = Duration::from_secs(2);
/// Between measurements, so that the server settles its closed sockets.
const PAUSE: Duration = Duration::from_millis(500);
/// The target: HS256 handshakes at least this fraction of unauthenticated
/// ones, measured in the same run.
const HS256_TARGET: f64 = 0.9;

#[derive(clap::Args)]
pub struct AuthArgs {
    /// The server: NAME,PID,URL (ws:// on loopback), serving /echo with
    /// `auth = "none"` and /echo-auth with `auth = "required"`.
    #[arg(long, value_parser = crate::parse_target)]
    target: (String, Option<u32>, String),
    /// The same server's TLS listener, wss://127.0.0.1:PORT: one more
    /// round over it.
    #[arg(long)]
    tls: Option<String>,
    /// Its admin listener, IP:PORT: the accepted-token counters.
    #[arg(long)]
    metrics: SocketAddr,
    /// The key directory (see `tokens`: hs256.secret, rs256.key.pem,
    /// es256.key.pem, eddsa.key.pem).
    #[arg(long)]
    keys: PathBuf,
    /// Rounds over ws, each measuring every algorithm once.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=10))]
    rounds: u64,
    /// Distinct tokens per algorithm.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    tokens: u64,
    /// Workers connecting at once.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=1_000))]
    concurrency: u64,
    /// Only these algorithms (comma-separated JOSE names, such as HS256),
    /// for a profile of one of them; the unauthenticated upgrades are
    /// always measured, the ratios need them.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Where auth.json and auth.md go.
    #[arg(long)]
    out_dir: PathBuf,
    /// Machine description for the report.
    #[arg(long, default_value = "")]
    machine: String,
    /// The command that produced the results.
    #[arg(long, default_value = "")]
    command: String,
}

/// One algorithm over one transport, over the rounds.
#[derive(Serialize)]
struct Row {
    transport: String,
    alg: String,
    rounds: usize,
    /// Medians over the rounds.
    handshakes_per_s: Option<f64>,
    server_cpu_us_per_handshake: Option<f64>,
    /// This algorithm's over the unauthenticated upgrades' of the same
    /// round, then the median.
    rate_ratio_to_none: Option<f64>,
    cpu_ratio_to_none: Option<f64>,
    /// Server CPU per handshake above the unauthenticated one's.
    added_cpu_us: Option<f64>,
    server_cpu_pct: Option<f64>,
    client_cpu_pct: Option<f64>,
    p50_us: Option<f64>,
    p99_us: Option<f64>,
    notes: Vec<String>,
}

#[derive(Serialize)]
struct AuthResult<'a> {
    machine: &'a str,
    command: &'a str,
    rounds: u64,
    distinct_tokens: u64,
    concurrency: u64,
    rows: Vec<Row>,
    hs256_ratio: Option<f64>,
    hs256_target: f64,
    hs256_met: Option<bool>,
    records: Vec<Record>,
}

/// Runs the measurements and writes auth.json and auth.md.
pub fn run(args: AuthArgs) -> anyhow::Result<()> {
    let (name, pid, url) = args.target.clone();
    let context = |url: &str| -> anyhow::Result<Context> {
        Ok(Context {
            server: name.clone(),
            pid,
            target: Target::parse(url)?,
            warmup: WARMUP,
            duration: DURATION,
            drain: Duration::ZERO,
            connect_concurrency: 128,
            metrics: Some(args.metrics),
        })
    };
    let ws = context(&url)?;
    anyhow::ensure!(!ws.target.is_tls(), "--target: expected a ws:// URL");
    let wss = args.tls.as_deref().map(context).transpose()?;
    if let Some(wss) = &wss {
        anyhow::ensure!(wss.target.is_tls(), "--tls: expected a wss:// URL");
    }
    // Every token signed before the first handshake.
    let unknown: Vec<&String> = args
        .only
        .iter()
        .filter(|name| !Algorithm::ALL.iter().any(|alg| alg.name() == name.as_str()))
        .collect();
    anyhow::ensure!(
        unknown.is_empty(),
        "--only: unknown algorithm(s) {unknown:?}; measured are HS256, RS256, ES256 and EdDSA"
    );
    let mut credentials = vec![Credentials::None];
    let wanted =
        |alg: &Algorithm| args.only.is_empty() || args.only.iter().any(|n| n == alg.name());
    for alg in Algorithm::ALL.into_iter().filter(wanted) {
        let pool = tokens::pool(&args.keys, alg, args.tokens as usize, &CLAIMS)?;
        credentials.push(Credentials::Tokens(alg, Rc::from(pool)));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let concurrency = args.concurrency as usize;
    let records = local.block_on(&runtime, async {
        let mut records = Vec::new();
        let rounds = (0..args.rounds as usize)
            .map(|round| (&ws, round))
            .chain(wss.iter().map(|wss| (wss, 0)));
        for (ctx, round) in rounds {
            // Each round starts with another one, so that none is always first.
            for turn in 0..credentials.len() {
                let which = &credentials[(round + turn) % credentials.len()];
                let path = match which {
                    Credentials::None => OPEN_PATH,
                    Credentials::Tokens(..) => AUTH_PATH,
                };
                let record = auth_handshakes(ctx, concurrency, path, which, round).await;
                eprintln!("  round {round} {}", crate::summary(&record));
                for note in &record.notes {
                    eprintln!("    note: {note}");
                }
                records.push(record);
                tokio::time::sleep(PAUSE).await;
            }
        }
        records
    });
    let rows = summarize(&records, &credentials);
    let hs256_ratio = rows
        .iter()
        .find(|row| row.transport == "ws" && row.alg == Algorithm::Hs256.name())
        .and_then(|row| row.rate_ratio_to_none);
    let result = AuthResult {
        machine: &args.machine,
        command: &args.command,
        rounds: args.rounds,
        distinct_tokens: args.tokens,
        concurrency: args.concurrency,
        rows,
        hs256_ratio,
        hs256_target: HS256_TARGET,
        hs256_met: hs256_ratio.map(|ratio| ratio >= HS256_TARGET),
        records,
    };
    std::fs::create_dir_all(&args.out_dir)?;
    std::fs::write(
        args.out_dir.join("auth.json"),
        serde_json::to_string_pretty(&result)?,
    )?;
    let md = markdown(&result);
    std::fs::write(args.out_dir.join("auth.md"), &md)?;
    print!("{md}");
    Ok(())
}

/// The middle value (the mean of the two middle ones for an even count).
fn median(mut values: Vec<f64>) -> Option<f64> {
    values.retain(|v| v.is_finite());
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

/// One row per transport and algorithm, in the order measured.
fn summarize(records: &[Record], credentials: &[Credentials]) -> Vec<Row> {
    let param = |r: &Record, name: &str| r.param_text(name);
    let metric = |r: &Record, name: &str| r.metrics.get(name).copied();
    let mut rows = Vec::new();
    for transport in ["ws", "wss"] {
        let of = |alg: &str| -> Vec<&Record> {
            records
                .iter()
                .filter(|r| param(r, "transport") == transport && param(r, "alg") == alg)
                .collect()
        };
        let none = of("none");
        // The unauthenticated record of the same round.
        let baseline = |r: &Record| {
            none.iter()
                .find(|n| param(n, "round") == param(r, "round"))
                .copied()
        };
        for which in credentials {
            let measured = of(which.label());
            if measured.is_empty() {
                continue;
            }
            let each = |f: &dyn Fn(&Record) -> Option<f64>| {
                median(measured.iter().filter_map(|r| f(r)).collect())
            };
            let ratio = |name: &str| {
                each(&|r| {
                    let base = baseline(r)?;
                    Some(metric(r, name)? / metric(base, name)?)
                })
            };
            rows.push(Row {
                transport: transport.to_owned(),
                alg: which.label().to_owned(),
                rounds: measured.len(),
                handshakes_per_s: each(&|r| metric(r, "handshakes_per_s")),
                server_cpu_us_per_handshake: each(&|r| metric(r, "server_cpu_us_per_op")),
                rate_ratio_to_none: ratio("handshakes_per_s"),
                cpu_ratio_to_none: ratio("server_cpu_us_per_op"),
                added_cpu_us: each(&|r| {
                    let base = baseline(r)?;
                    Some(metric(r, "server_cpu_us_per_op")? - metric(base, "server_cpu_us_per_op")?)
                }),
                server_cpu_pct: each(&|r| metric(r, "server_cpu_pct")),
                client_cpu_pct: each(&|r| metric(r, "client_cpu_pct")),
                p50_us: each(&|r| metric(r, "p50_us")),
                p99_us: each(&|r| metric(r, "p99_us")),
                notes: measured
                    .iter()
                    .flat_map(|r| {
                        r.notes
                            .iter()
                            .map(|n| format!("round {}: {n}", param(r, "round")))
                    })
                    .collect(),
            });
        }
    }
    rows
}

fn markdown(r: &AuthResult<'_>) -> String {
    let opt = |v: Option<f64>| v.map_or_else(|| "—".to_owned(), number);
    let ratio = |v: Option<f64>| v.map_or_else(|| "—".to_owned(), |v| format!("{v:.2}x"));
    let pct = |v: Option<f64>| v.map_or_else(|| "?".to_owned(), |v| format!("{v:.0}%"));
    let mut md = String::new();
    let _ = writeln!(md, "# wsedge authenticated handshakes\n");
    if !r.machine.is_empty() {
        let _ = writeln!(md, "Machine: {}  ", r.machine);
    }
    if !r.command.is_empty() {
        let _ = writeln!(md, "Command: `{}`  ", r.command);
    }
    let _ = writeln!(
        md,
        "One wsedge pinned to core 0, the load generator to core 1; {} workers each connect, upgrade \
         and reset in a loop for {} s per measurement. `none`: upgrades to `{OPEN_PATH}` (`auth = \"none\"`); the \
         others: to `{AUTH_PATH}` (`auth = \"required\"`) with `Authorization: Bearer`, each upgrade the next of \
         {} distinct tokens (one user each, `iss`, `aud`, `exp` and a join grant checked). Ratios: the \
         algorithm's over `none`'s in the same round, median over {} round(s) over ws{}.\n",
        r.concurrency,
        DURATION.as_secs(),
        number(r.distinct_tokens as f64),
        r.rounds,
        if r.rows.iter().any(|row| row.transport == "wss") {
            " (one over wss)"
        } else {
            ""
        }
    );
    let _ = writeln!(
        md,
        "| transport | algorithm | handshakes/s | server CPU µs/handshake | rate vs none | CPU vs none | added CPU µs | CPU server/client | p50 / p99 µs |"
    );
    let _ = writeln!(md, "|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for row in &r.rows {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {}/{} | {} / {} |",
            row.transport,
            row.alg,
            opt(row.handshakes_per_s),
            opt(row.server_cpu_us_per_handshake),
            ratio(row.rate_ratio_to_none),
            ratio(row.cpu_ratio_to_none),
            opt(row.added_cpu_us),
            pct(row.server_cpu_pct),
            pct(row.client_cpu_pct),
            opt(row.p50_us),
            opt(row.p99_us),
        );
    }
    let met = match r.hs256_met {
        Some(true) => "yes",
        Some(false) => "**no**",
        None => "—",
    };
    let _ = writeln!(
        md,
        "\n| target | measured | met |\n|---|---|---|\n| HS256 handshakes/s ≥ {:.1}x unauthenticated (ws, same run) | {} | {met} |",
        r.hs256_target,
        ratio(r.hs256_ratio)
    );
    let notes: Vec<String> = r
        .rows
        .iter()
        .flat_map(|row| {
            row.notes
                .iter()
                .map(move |n| format!("- {} {}: {n}", row.transport, row.alg))
        })
        .collect();
    if !notes.is_empty() {
        let _ = writeln!(md, "\nNotes:\n\n{}", notes.join("\n"));
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(transport: &str, alg: &str, round: usize, rate: f64, cpu_us: f64) -> Record {
        let mut r = Record::new("wsedge", "auth-handshakes", String::new(), "", true);
        r.param("transport", transport)
            .param("alg", alg)
            .param("round", round);
        r.metric("handshakes_per_s", rate)
            .metric("server_cpu_us_per_op", cpu_us);
        r
    }

    #[test]
    fn medians() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, f64::NAN, 2.0, 3.0]), Some(2.5));
    }

    #[test]
    fn ratios_pair_each_round_with_its_own_baseline() {
        let pool: Rc<[hyper::header::HeaderValue]> = Rc::from(Vec::new());
        let credentials = [
            Credentials::None,
            Credentials::Tokens(Algorithm::Hs256, pool),
        ];
        // The machine got twice as fast in round 1: ratios stay at 0.9x.
        let records = [
            record("ws", "none", 0, 1000.0, 40.0),
            record("ws", "HS256", 0, 900.0, 44.0),
            record("ws", "HS256", 1, 1800.0, 22.0),
            record("ws", "none", 1, 2000.0, 20.0),
            record("wss", "none", 0, 100.0, 200.0),
        ];
        let rows = summarize(&records, &credentials);
        let found: Vec<_> = rows
            .iter()
            .map(|r| {
                (
                    r.transport.as_str(),
                    r.alg.as_str(),
                    r.rounds,
                    r.rate_ratio_to_none.map(|v| (v * 1e6).round() / 1e6),
                    r.added_cpu_us,
                )
            })
            .collect();
        assert_eq!(
            found,
            [
                ("ws", "none", 2, Some(1.0), Some(0.0)),
                ("ws", "HS256", 2, Some(0.9), Some(3.0)),
                ("wss", "none", 1, Some(1.0), Some(0.0)),
            ]
        );
    }
}
