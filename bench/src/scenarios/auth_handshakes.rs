//! Authenticated handshakes: the loop of the `handshakes` scenario, each
//! upgrade carrying the next token of a pool (`Authorization: Bearer`) to a
//! channel that requires one, or none at all to a channel of the same
//! server that checks nothing: the cost of verification is the difference.
//!
//! The server's `wsedge_auth_total{result="accepted"}` counters are read
//! before and after: every upgrade with a token must have been verified
//! once (the note says otherwise), and one without none.

use std::rc::Rc;

use hyper::header::HeaderValue;

use super::{Context, handshake_loop};
use crate::{metrics, record::Record, tokens::Algorithm};

/// What the upgrades carry.
pub enum Credentials {
    /// Nothing, to a channel with `auth = "none"`.
    None,
    /// Tokens of one algorithm, each upgrade the next of the pool, to a
    /// channel with `auth = "required"`.
    Tokens(Algorithm, Rc<[HeaderValue]>),
}

impl Credentials {
    /// The algorithm's JOSE name, or `none`.
    pub fn label(&self) -> &'static str {
        match self {
            Credentials::None => "none",
            Credentials::Tokens(alg, _) => alg.name(),
        }
    }
}

/// `concurrency` workers upgrade to `path` with `credentials` for the
/// context's window; `round` tells repeated measurements apart.
pub async fn auth_handshakes(
    ctx: &Context,
    concurrency: usize,
    path: &'static str,
    credentials: &Credentials,
    round: usize,
) -> Record {
    let alg = credentials.label();
    let id = format!(
        "auth-handshakes {} alg={alg} concurrency={concurrency}",
        ctx.transport()
    );
    let mut record = Record::new(&ctx.server, "auth-handshakes", id, "handshakes_per_s", true);
    record
        .param("alg", alg)
        .param("path", path)
        .param("concurrency", concurrency)
        .param("transport", ctx.transport())
        .param("round", round);
    let tokens = match credentials {
        Credentials::None => None,
        Credentials::Tokens(_, tokens) => {
            record.param("distinct_tokens", tokens.len());
            Some(tokens.clone())
        }
    };
    let before = accepted(ctx).await;
    let upgraded = handshake_loop(ctx, concurrency, path, tokens, &mut record).await;
    let after = accepted(ctx).await;
    record.metric("upgraded", upgraded as f64);
    if let (Some(before), Some(after)) = (before, after) {
        let verified = after - before;
        record.metric("verified", verified);
        let expected = match credentials {
            Credentials::None => 0.0,
            Credentials::Tokens(..) => upgraded as f64,
        };
        if verified != expected {
            record.notes.push(format!(
                "the server accepted {verified} tokens for {upgraded} upgrades (expected {expected})"
            ));
        }
    }
    record
}

/// The server's count of accepted credentials, all sources summed; `None`
/// without an admin address or when it cannot be read.
async fn accepted(ctx: &Context) -> Option<f64> {
    let samples = metrics::scrape(ctx.metrics?).await.ok()?;
    Some(
        samples
            .iter()
            .filter(|(series, _)| {
                series.starts_with("wsedge_auth_total{") && series.contains(r#"result="accepted""#)
            })
            .map(|(_, value)| value)
            .sum(),
    )
}
