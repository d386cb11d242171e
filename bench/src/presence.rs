//! Presence of a big room: `presence-hold` opens and holds one share of the
//! room's members on one node (each member its own user, by an HS256 token
//! in the query string), `presence-query` measures the admin API's
//! `GET /presence/...` against a node with a few concurrent keep-alive
//! clients (the count alone, a page, the whole list page by page), and
//! `presence-report` turns the query runs into presence.json and
//! presence.md. `bench/run.sh presence` starts the Redis, the nodes and one
//! holder per node (a process may open at most 20,000 files here, so a room
//! of 100,000 members takes several of each).

use std::{
    cell::{Cell, RefCell},
    fmt::Write as _,
    fs,
    io::Write as _,
    net::SocketAddr,
    path::PathBuf,
    rc::Rc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::Context as _;
use serde::Serialize;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::{
    client::Target,
    procfs::CpuWindow,
    record::Record,
    report::{number, write_notes},
    scenarios::{self, Context},
    tokens,
};

/// The most connections one holder opens: the file limit (20,000) less
/// some for the process itself.
const MAX_HOLD: usize = 19_900;

/// Connect attempts per member: a handshake that timed out while a node
/// was busy with thousands of others gets another chance.
const CONNECT_ROUNDS: usize = 3;

/// Connections opened at once per holder.
const CONNECT_CONCURRENCY: usize = 64;

/// How long the tokens live: longer than any run.
const TOKEN_LIFETIME: Duration = Duration::from_secs(6 * 3600);

/// The page size of a whole-list walk: the API's largest.
const WALK_PAGE: usize = 1000;

/// How long the members' presence may take to add up before measuring.
const SETTLE: Duration = Duration::from_secs(60);

/// Largest answer the query client reads (a page of 1,000 long ids).
const MAX_ANSWER: usize = 1 << 20;

#[derive(clap::Args)]
pub struct HoldArgs {
    /// The node's WebSocket URL (ws://127.0.0.1:PORT).
    #[arg(long)]
    target: String,
    /// The room's path, e.g. /chat/big.
    #[arg(long)]
    path: String,
    /// Members to open (at most 19,900).
    #[arg(long)]
    connections: usize,
    /// The first member's number: members are users u{first}..
    #[arg(long, default_value_t = 0)]
    first_user: usize,
    /// The HS256 secret the node verifies tokens with.
    #[arg(long)]
    secret_file: PathBuf,
    /// Upper bound on the hold, in seconds (the script stops it earlier).
    #[arg(long, default_value_t = 900)]
    hold_seconds: u64,
}

#[derive(clap::Args)]
pub struct QueryArgs {
    /// The admin address of the node asked, IP:PORT (loopback).
    #[arg(long)]
    admin: SocketAddr,
    /// The admin token.
    #[arg(long)]
    token_file: PathBuf,
    /// The presence path, e.g. /presence/chat/big.
    #[arg(long)]
    path: String,
    /// The node's PID, for its CPU time.
    #[arg(long)]
    pid: Option<u32>,
    /// Redis's PID, for its CPU time.
    #[arg(long)]
    redis_pid: Option<u32>,
    /// Distinct users the room must have: every answer is checked.
    #[arg(long)]
    users: u64,
    /// "cluster" or "node": the scope every answer must say.
    #[arg(long)]
    scope: String,
    /// Names the setup in the report (e.g. "6 nodes, cluster").
    #[arg(long)]
    label: String,
    /// Concurrent keep-alive clients.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Where to append the records (a JSON array, created if missing).
    #[arg(long)]
    out: PathBuf,
}

#[derive(clap::Args)]
pub struct PresenceReportArgs {
    /// Directory for presence.json and presence.md.
    #[arg(long)]
    out_dir: PathBuf,
    #[arg(long, default_value = "")]
    machine: String,
    #[arg(long, default_value = "")]
    command: String,
    /// Lines of context for the report (the setup, the connect phase).
    #[arg(long = "note")]
    notes: Vec<String>,
    /// The JSON written by `presence-query`.
    input: PathBuf,
}

/// An HS256 JWT for `user`, valid for [`TOKEN_LIFETIME`].
fn token(key: &ring::hmac::Key, user: &str, now: u64) -> String {
    tokens::hs256(
        key,
        &serde_json::json!({ "sub": user, "exp": now + TOKEN_LIFETIME.as_secs() }),
    )
}

fn current_thread() -> anyhow::Result<(tokio::runtime::Runtime, tokio::task::LocalSet)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok((runtime, tokio::task::LocalSet::new()))
}

/// Opens the members, prints one JSON line (`connected`, `failed`,
/// `first_error`, `seconds`) and holds them, answering pings, until killed
/// or `hold_seconds` passed.
pub fn hold(args: HoldArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=MAX_HOLD).contains(&args.connections),
        "--connections: 1 to {MAX_HOLD}"
    );
    let key = ring::hmac::Key::new(
        ring::hmac::HMAC_SHA256,
        &tokens::read_secret(&args.secret_file)?,
    );
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let ctx = Context {
        server: String::new(),
        pid: None,
        target: Target::parse(&args.target)?,
        warmup: Duration::ZERO,
        duration: Duration::ZERO,
        drain: Duration::ZERO,
        connect_concurrency: CONNECT_CONCURRENCY,
        metrics: None,
    };
    let (runtime, local) = current_thread()?;
    local.block_on(&runtime, async {
        let started = Instant::now();
        let mut wanted: Vec<usize> =
            (args.first_user..args.first_user + args.connections).collect();
        let mut held = Vec::with_capacity(wanted.len());
        let mut first_error = None;
        for _ in 0..CONNECT_ROUNDS {
            let paths = wanted
                .iter()
                .map(|n| {
                    format!(
                        "{}?access_token={}",
                        args.path,
                        token(&key, &user_id(*n), now)
                    )
                })
                .collect();
            let (conns, _, error) =
                scenarios::connect_many(&ctx, paths, CONNECT_CONCURRENCY, None).await;
            first_error = first_error.or(error);
            let mut opened = vec![false; wanted.len()];
            for (index, conn) in conns {
                opened[index] = true;
                held.push(conn);
            }
            wanted = wanted
                .into_iter()
                .zip(opened)
                .filter_map(|(n, opened)| (!opened).then_some(n))
                .collect();
            if wanted.is_empty() {
                break;
            }
        }
        let line = serde_json::json!({
            "connected": held.len(),
            "failed": wanted.len(),
            "first_error": first_error,
            "seconds": started.elapsed().as_secs_f64(),
        });
        println!("{line}");
        std::io::stdout().flush().ok();
        // Read (and so answer pings) until the node closes or the hold ends.
        let readers: Vec<_> = held
            .into_iter()
            .map(|mut conn| {
                tokio::task::spawn_local(
                    async move { while conn.read_frames(|_| {}).await.is_ok() {} },
                )
            })
            .collect();
        tokio::time::sleep(Duration::from_secs(args.hold_seconds)).await;
        drop(readers);
    });
    Ok(())
}

/// Member `n`'s user id: fixed width, so that id order is number order.
fn user_id(n: usize) -> String {
    format!("u{n:06}")
}

/// One keep-alive HTTP/1.1 client of the admin API.
struct Client {
    addr: SocketAddr,
    stream: TcpStream,
    request_head: String,
    buffer: Vec<u8>,
}

async fn open(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

impl Client {
    async fn connect(addr: SocketAddr, token: &str) -> anyhow::Result<Self> {
        Ok(Self {
            addr,
            stream: open(addr).await?,
            request_head: format!("Host: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n"),
            buffer: Vec::with_capacity(64 * 1024),
        })
    }

    /// `GET path`; the body of a 200 answer. A connection the server
    /// closed while it was idle (its keep-alive timeout: a client may wait
    /// for the others' first walks) is opened again, once.
    async fn get(&mut self, path: &str) -> anyhow::Result<serde_json::Value> {
        let request = format!("GET {path} HTTP/1.1\r\n{}", self.request_head);
        self.buffer.clear();
        let sent = self.stream.write_all(request.as_bytes()).await;
        if sent.is_err() || self.read_more().await.is_err() {
            self.buffer.clear();
            self.stream = open(self.addr).await?;
            self.stream.write_all(request.as_bytes()).await?;
        }
        let (head_end, length) = loop {
            if let Some(end) = find(&self.buffer, b"\r\n\r\n") {
                let head = std::str::from_utf8(&self.buffer[..end])?;
                anyhow::ensure!(head.starts_with("HTTP/1.1 200"), "answered {head}");
                let length = head
                    .lines()
                    .find_map(|line| {
                        let (name, value) = line.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse::<usize>().ok())?
                    })
                    .context("an answer without Content-Length")?;
                break (end + 4, length);
            }
            self.read_more().await?;
        };
        anyhow::ensure!(length <= MAX_ANSWER, "a {length}-byte answer");
        while self.buffer.len() < head_end + length {
            self.read_more().await?;
        }
        Ok(serde_json::from_slice(
            &self.buffer[head_end..head_end + length],
        )?)
    }

    async fn read_more(&mut self) -> anyhow::Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk).await?;
        anyhow::ensure!(n > 0, "the admin API closed the connection");
        self.buffer.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// What one measurement asks for.
#[derive(Clone, Copy)]
enum Query {
    /// `limit=0`: the counts alone.
    Count,
    /// The first page of `limit` users.
    Page(usize),
    /// Every user, [`WALK_PAGE`] at a time: one operation per walk.
    Whole,
}

impl Query {
    fn name(self) -> String {
        match self {
            Query::Count => "count".to_owned(),
            Query::Page(limit) => format!("page of {limit}"),
            Query::Whole => format!("whole list ({WALK_PAGE} per page)"),
        }
    }
}

/// Checks an answer's counts and scope; returns its page and cursor.
fn check(
    answer: &serde_json::Value,
    users: u64,
    scope: &str,
) -> anyhow::Result<(usize, Option<String>)> {
    anyhow::ensure!(
        answer["users"].as_u64() == Some(users) && answer["scope"] == scope,
        "expected {users} users, scope {scope}; answered users {} connections {} scope {}",
        answer["users"],
        answer["connections"],
        answer["scope"]
    );
    let page = answer["list"].as_array().map_or(0, Vec::len);
    Ok((page, answer["next"].as_str().map(str::to_owned)))
}

/// One operation: a count, a page, or a whole walk.
async fn operate(
    client: &mut Client,
    base: &str,
    query: Query,
    users: u64,
    scope: &str,
) -> anyhow::Result<u64> {
    match query {
        Query::Count => {
            check(&client.get(&format!("{base}?limit=0")).await?, users, scope)?;
            Ok(1)
        }
        Query::Page(limit) => {
            let (page, _) = check(
                &client.get(&format!("{base}?limit={limit}")).await?,
                users,
                scope,
            )?;
            anyhow::ensure!(page as u64 == users.min(limit as u64), "a page of {page}");
            Ok(1)
        }
        Query::Whole => {
            let (mut seen, mut after, mut requests) = (0u64, None::<String>, 0u64);
            loop {
                let path = match &after {
                    None => format!("{base}?limit={WALK_PAGE}"),
                    Some(cursor) => format!("{base}?limit={WALK_PAGE}&after={cursor}"),
                };
                let (page, next) = check(&client.get(&path).await?, users, scope)?;
                seen += page as u64;
                requests += 1;
                match next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
            anyhow::ensure!(seen == users, "the walk listed {seen} users");
            Ok(requests)
        }
    }
}

/// Measures the count, a page of 100 and the whole list against one node.
pub fn query(args: QueryArgs) -> anyhow::Result<()> {
    let token = tokens::read_secret(&args.token_file)?;
    let token = String::from_utf8(token).context("the admin token is not UTF-8")?;
    anyhow::ensure!(
        args.admin.ip().is_loopback(),
        "only loopback admin addresses"
    );
    let (runtime, local) = current_thread()?;
    let mut records: Vec<Record> = match fs::read_to_string(&args.out) {
        Ok(text) => serde_json::from_str(&text)?,
        Err(_) => Vec::new(),
    };
    local.block_on(&runtime, async {
        settle(&args, &token).await?;
        for query in [Query::Count, Query::Page(100), Query::Whole] {
            let record = measure(&args, &token, query).await?;
            eprintln!("  {:<40} {}", record.id, summary(&record));
            for note in &record.notes {
                eprintln!("  {:<40}   note: {note}", "");
            }
            records.push(record);
        }
        anyhow::Ok(())
    })?;
    fs::write(&args.out, serde_json::to_string_pretty(&records)?)?;
    Ok(())
}

/// Waits until the node counts every member (the members were opened on
/// several nodes, whose shares reach Redis within moments).
async fn settle(args: &QueryArgs, token: &str) -> anyhow::Result<()> {
    let mut client = Client::connect(args.admin, token).await?;
    let deadline = Instant::now() + SETTLE;
    loop {
        let answer = client.get(&format!("{}?limit=0", args.path)).await?;
        match check(&answer, args.users, &args.scope) {
            Ok(_) => return Ok(()),
            Err(error) if Instant::now() > deadline => {
                return Err(error.context(format!("not settled within {SETTLE:?}")));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

async fn measure(args: &QueryArgs, token: &str, query: Query) -> anyhow::Result<Record> {
    let id = format!("presence {}: {}", args.label, query.name());
    let mut record = Record::new("wsedge", "presence", id, "ops_per_s", true);
    record
        .param("setup", args.label.as_str())
        .param("query", query.name())
        .param("users", args.users)
        .param("clients", args.clients)
        .param("path", args.path.as_str());
    let hist = Rc::new(RefCell::new(scenarios::histogram()));
    let (ops, requests) = (Rc::new(Cell::new(0u64)), Rc::new(Cell::new(0u64)));
    let error = Rc::new(RefCell::new(None::<String>));
    let mut clients = Vec::new();
    for _ in 0..args.clients {
        clients.push(Client::connect(args.admin, token).await?);
    }
    // One operation each first: the answers are checked before timing.
    for client in &mut clients {
        operate(client, &args.path, query, args.users, &args.scope).await?;
    }
    let end = Instant::now() + Duration::from_secs(args.seconds);
    let cpu = CpuWindow::start(args.pid);
    let redis = CpuWindow::start(args.redis_pid);
    let started = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            let (hist, ops, requests, error) =
                (hist.clone(), ops.clone(), requests.clone(), error.clone());
            let (base, users, scope) = (args.path.clone(), args.users, args.scope.clone());
            tokio::task::spawn_local(async move {
                while Instant::now() < end {
                    let sent = Instant::now();
                    match operate(&mut client, &base, query, users, &scope).await {
                        Ok(n) => {
                            let nanos = sent.elapsed().as_nanos() as u64;
                            hist.borrow_mut().record(nanos.max(1)).ok();
                            ops.set(ops.get() + 1);
                            requests.set(requests.get() + n);
                        }
                        Err(e) => {
                            error.borrow_mut().get_or_insert(format!("{e:#}"));
                            return;
                        }
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        let _ = task.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    record.cpu(cpu.finish());
    if let Some(redis) = redis.finish().server {
        record.metric("redis_cpu_pct", redis);
    }
    record
        .metric("ops_per_s", ops.get() as f64 / elapsed)
        .metric("requests_per_s", requests.get() as f64 / elapsed);
    record.cpu_per_op("ops_per_s");
    let hist = hist.borrow();
    if !hist.is_empty() {
        for (name, quantile) in [("p50_ms", 0.5), ("p99_ms", 0.99)] {
            record.metric(name, hist.value_at_quantile(quantile) as f64 / 1e6);
        }
    }
    if let Some(error) = error.borrow_mut().take() {
        record.notes.push(format!("a client stopped: {error}"));
    }
    Ok(record)
}

fn summary(record: &Record) -> String {
    let metric = |name: &str| record.metrics.get(name).copied().unwrap_or(f64::NAN);
    format!(
        "ops/s={} p50={}ms p99={}ms server_us/op={} cpu node/redis/client/others={:.0}/{:.0}/{:.0}/{:.0}%",
        number(metric("ops_per_s")),
        number(metric("p50_ms")),
        number(metric("p99_ms")),
        number(metric("server_cpu_us_per_op")),
        metric("server_cpu_pct"),
        metric("redis_cpu_pct"),
        metric("client_cpu_pct"),
        metric("others_cpu_pct"),
    )
}

#[derive(Serialize)]
struct PresenceResult<'a> {
    machine: &'a str,
    command: &'a str,
    notes: &'a [String],
    records: &'a [Record],
}

pub fn report(args: PresenceReportArgs) -> anyhow::Result<()> {
    let text = fs::read_to_string(&args.input)
        .with_context(|| format!("reading {}", args.input.display()))?;
    let records: Vec<Record> = serde_json::from_str(&text)?;
    let result = PresenceResult {
        machine: &args.machine,
        command: &args.command,
        notes: &args.notes,
        records: &records,
    };
    fs::create_dir_all(&args.out_dir)?;
    fs::write(
        args.out_dir.join("presence.json"),
        serde_json::to_string_pretty(&result)?,
    )?;
    let mut md = String::new();
    let _ = writeln!(md, "# Presence of a big room\n");
    let _ = writeln!(md, "- machine: {}", result.machine);
    let _ = writeln!(md, "- command: `{}`", result.command);
    for note in result.notes {
        let _ = writeln!(md, "- {note}");
    }
    let _ = writeln!(
        md,
        "\n| setup | query | users | clients | ops/s | requests/s | p50 ms | p99 ms | node CPU µs/op | node / redis / client / others CPU |"
    );
    let _ = writeln!(md, "|---|---|---:|---:|---:|---:|---:|---:|---:|---|");
    for record in &records {
        let metric = |name: &str| record.metrics.get(name).copied().unwrap_or(f64::NAN);
        let param = |name: &str| record.param_text(name);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0}% / {:.0}% / {:.0}% / {:.0}% |",
            param("setup"),
            param("query"),
            number(param_number(record, "users")),
            param("clients"),
            number(metric("ops_per_s")),
            number(metric("requests_per_s")),
            number(metric("p50_ms")),
            number(metric("p99_ms")),
            number(metric("server_cpu_us_per_op")),
            metric("server_cpu_pct"),
            metric("redis_cpu_pct"),
            metric("client_cpu_pct"),
            metric("others_cpu_pct"),
        );
    }
    write_notes(&mut md, &records);
    fs::write(args.out_dir.join("presence.md"), &md)?;
    print!("{md}");
    Ok(())
}

/// The `users` parameter as a number.
fn param_number(record: &Record, param: &str) -> f64 {
    record
        .params
        .get(param)
        .and_then(serde_json::Value::as_f64)
        .unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests {
    use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};

    use super::*;

    #[test]
    fn tokens_are_hs256_jwts_with_the_user_and_an_expiry() {
        let key =
            ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"0123456789abcdef0123456789abcdef");
        let token = token(&key, "u000042", 1_000);
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["sub"], "u000042");
        assert_eq!(claims["exp"], 1_000 + TOKEN_LIFETIME.as_secs());
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        let input = format!("{}.{}", parts[0], parts[1]);
        ring::hmac::verify(&key, input.as_bytes(), &signature).unwrap();
    }
}
