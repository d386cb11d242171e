//! The admin listener: health, readiness, metrics, the publish API and
//! channel statistics over plain HTTP/1.1 on its own address (`[admin]
//! listen`, loopback by default), never on a WebSocket listener.
//!
//! | path | method | bearer token | answer |
//! |---|---|---|---|
//! | `/healthz` | GET, HEAD | no | 200 while the process serves |
//! | `/readyz` | GET, HEAD | no | 200, or 503 once shutdown has started, or (with `[cluster]`) while the cluster link is not up |
//! | `/metrics` | GET, HEAD | no | OpenMetrics text (see `metrics`) |
//! | `/channels` | GET, HEAD | yes | JSON statistics |
//! | `/publish/{channel}[/{room}]` | POST | yes | JSON `{"delivered": n}`; 404 unknown channel, 413 over `max_payload` |
//! | `/users/{user}/...`, `/presence/...` | see `users` | yes | publish to, disconnect and list a user's connections; who is on a channel or in a room |
//! | `/`, `/dashboard.js`, `/dashboard.css` | GET, HEAD | no | the dashboard page (see `dashboard`): a login form until a token is given |
//! | `/events` | GET | yes | the dashboard's live feed, Server-Sent Events (see `feed`); 503 when too many are open |
//!
//! Other methods get 405 with `Allow`, other paths 404, a missing or wrong
//! token 401 with `WWW-Authenticate: Bearer`. A client that stops reading
//! an answer is cut off (see `deadline`). The token is read from the
//! current snapshot at each request, so a reload that changes `token_file`
//! applies at once; the listen address itself is bound once.
//!
//! Life cycle: the admin accept loop is not on the server's task tracker,
//! whose drain waits for every task to end. It answers until
//! [`Server::serve`](crate::Server::serve) returns, through the whole drain,
//! so that `/readyz` says 503 while connections close and load balancers
//! stop sending new ones; `serve` holds it in an abort-on-drop handle.
//!
//! Logs carry the method, the path (never the query string) and the status;
//! never a header.

mod api;
mod dashboard;
mod deadline;
mod feed;
mod metrics;
mod users;

use std::{collections::HashMap, convert::Infallible, net::IpAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::{
    HeaderMap, Method, Request, Response, StatusCode,
    body::Incoming,
    header::{self, HeaderValue},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use tokio::{
    net::{TcpListener, TcpStream},
    task::JoinSet,
};
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument;

use self::{
    deadline::{WRITE_STALL_TIMEOUT, WriteDeadline, WriteState},
    feed::{FeedBody, Feeds},
};
use crate::{
    cluster::LinkState,
    server::{
        handle::Handle,
        listener::{Listener, recover_from_accept_error},
    },
};

/// Admin connections served at once; more are closed on accept. Ample for
/// a scraper, health checks and a few publishing backends with keep-alive,
/// small enough that a misbehaving client cannot hold many sockets.
const MAX_CONNECTIONS: usize = 256;

/// Admin connections one peer address holds at once: a scraper, a health
/// checker or a backend needs a few; one misbehaving peer cannot take the
/// whole [`MAX_CONNECTIONS`] and starve everybody's `/healthz`.
const MAX_CONNECTIONS_PER_PEER: usize = 16;

/// Time for a request's headers to arrive: generous for a local client,
/// short enough that idle sockets do not pile up.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// A whole answer.
type Reply = Response<Full<Bytes>>;

/// What the admin service sends: a whole answer, or the dashboard feed.
type Body = Either<Full<Bytes>, FeedBody>;

/// Serves the admin API on `listeners` (from [`Listener::admin`]), and the
/// dashboard feed's producer. They stop when the returned handles drop.
pub(crate) fn start(listeners: Vec<Listener>, handle: Handle) -> Vec<AbortOnDropHandle<()>> {
    let sockets: Vec<TcpListener> = listeners.into_iter().map(Listener::into_socket).collect();
    if sockets.is_empty() {
        return Vec::new();
    }
    let feeds = Arc::new(Feeds::new());
    let producer = AbortOnDropHandle::new(tokio::spawn(feeds.clone().run(handle.clone())));
    let admin = Arc::new(Admin {
        registry: metrics::registry(handle.clone()),
        handle,
        feeds,
    });
    sockets
        .into_iter()
        .map(|socket| {
            if let Ok(addr) = socket.local_addr() {
                tracing::info!(%addr, scheme = "http", "admin listening");
            }
            AbortOnDropHandle::new(tokio::spawn(accept_loop(socket, admin.clone())))
        })
        .chain([producer])
        .collect()
}

/// What every admin request needs.
struct Admin {
    handle: Handle,
    registry: Registry,
    feeds: Arc<Feeds>,
}

/// Accepts until aborted. Connections live in a `JoinSet`, so they are
/// aborted with the loop; each returns its peer's address, so that the
/// loop alone keeps the per-peer counts (no lock).
async fn accept_loop(socket: TcpListener, admin: Arc<Admin>) {
    let mut connections = JoinSet::new();
    let mut per_peer: HashMap<IpAddr, usize> = HashMap::new();
    loop {
        tokio::select! {
            accepted = socket.accept() => match accepted {
                Ok((_, peer)) if connections.len() >= MAX_CONNECTIONS => {
                    tracing::debug!(%peer, "admin connection refused: {MAX_CONNECTIONS} already open");
                }
                Ok((_, peer)) if per_peer.get(&peer.ip()) >= Some(&MAX_CONNECTIONS_PER_PEER) => {
                    tracing::debug!(%peer, "admin connection refused: {MAX_CONNECTIONS_PER_PEER} already open from this address");
                }
                Ok((stream, peer)) => {
                    *per_peer.entry(peer.ip()).or_default() += 1;
                    let span = tracing::debug_span!("admin", %peer);
                    let served = serve_connection(stream, admin.clone()).instrument(span);
                    connections.spawn(async move {
                        served.await;
                        peer.ip()
                    });
                }
                Err(error) => recover_from_accept_error(error).await,
            },
            Some(ended) = connections.join_next(), if !connections.is_empty() => {
                // A panicked connection loses its address: counts stay
                // conservative (too high) rather than unbounded.
                if let Ok(ip) = ended
                    && let Some(count) = per_peer.get_mut(&ip)
                {
                    *count -= 1;
                    if *count == 0 {
                        per_peer.remove(&ip);
                    }
                }
            }
        }
    }
}

async fn serve_connection(stream: TcpStream, admin: Arc<Admin>) {
    let _ = stream.set_nodelay(true);
    deadline::limit_unsent(&stream);
    let writer = WriteState::default();
    let stream = WriteDeadline::new(stream, WRITE_STALL_TIMEOUT, writer.clone());
    let service = service_fn(move |request| {
        let admin = admin.clone();
        let writer = writer.clone();
        async move { Ok::<_, Infallible>(admin.respond(request, writer).await) }
    });
    let served = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(error) = served {
        tracing::debug!(%error, "admin connection ended with an error");
    }
}

impl Admin {
    /// Answers one request on a connection whose writes `writer` watches.
    async fn respond(&self, request: Request<Incoming>, writer: WriteState) -> Response<Body> {
        let method = request.method().clone();
        // The path only: query strings may carry tokens.
        let path = request.uri().path().to_owned();
        let answer = if path == "/events" {
            self.events(&request, writer)
        } else {
            self.route(request).await.map(Either::Left)
        };
        tracing::debug!(%method, path, status = answer.status().as_u16(), "admin request");
        answer
    }

    /// `GET /events`, behind the token.
    fn events(&self, request: &Request<Incoming>, writer: WriteState) -> Response<Body> {
        if *request.method() != Method::GET {
            return method_not_allowed("GET").map(Either::Left);
        }
        if let Some(refused) = self.refusal(request.headers()) {
            return refused.map(Either::Left);
        }
        self.feeds.open(writer)
    }

    async fn route(&self, request: Request<Incoming>) -> Reply {
        let read_only = matches!(*request.method(), Method::GET | Method::HEAD);
        let path = request.uri().path();
        if path.starts_with("/publish/") {
            return match *request.method() {
                Method::POST => api::publish(&self.handle, request).await,
                _ => method_not_allowed("POST"),
            };
        }
        if path.starts_with("/users/") || path.starts_with("/presence/") {
            if let Some(refused) = self.refusal(request.headers()) {
                return refused;
            }
            return users::route(&self.handle, request)
                .await
                .unwrap_or_else(|| text(StatusCode::NOT_FOUND, "no admin endpoint at this path"));
        }
        if let Some(answer) = dashboard::asset(request.method(), path) {
            return answer;
        }
        if !matches!(path, "/healthz" | "/readyz" | "/metrics" | "/channels") {
            return text(StatusCode::NOT_FOUND, "no admin endpoint at this path");
        }
        if !read_only {
            return method_not_allowed("GET, HEAD");
        }
        match path {
            "/healthz" => text(StatusCode::OK, "ok"),
            "/readyz" if self.handle.is_shutting_down() => {
                text(StatusCode::SERVICE_UNAVAILABLE, "shutting down")
            }
            "/readyz" => match self.handle.cluster_state() {
                Some(state) if state != LinkState::Up => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!("cluster link {}", state.as_str()),
                ),
                _ => text(StatusCode::OK, "ready"),
            },
            "/metrics" => {
                let mut answer =
                    Response::new(Full::new(Bytes::from(metrics::render(&self.registry))));
                answer.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(metrics::CONTENT_TYPE),
                );
                answer
            }
            _ => self
                .refusal(request.headers())
                .unwrap_or_else(|| reply(StatusCode::OK, api::channels(&self.handle.stats()))),
        }
    }

    /// The 401 answer when the bearer token is not the one now configured
    /// (it follows reloads); `None` when it is.
    fn refusal(&self, headers: &HeaderMap) -> Option<Reply> {
        let admin = self.handle.admin_settings();
        api::authorize(headers, admin.as_ref().and_then(|a| a.token.as_ref()))
            .err()
            .map(api::unauthorized)
    }
}

/// The same statistics as [`Handle::stats`](crate::Handle::stats).
/// A short plain-text answer.
fn text(status: StatusCode, body: &str) -> Reply {
    let mut answer = Response::new(Full::new(Bytes::from(format!("{body}\n"))));
    *answer.status_mut() = status;
    answer.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    answer
}

/// A JSON answer.
fn reply(status: StatusCode, body: serde_json::Value) -> Reply {
    let mut answer = Response::new(Full::new(Bytes::from(format!("{body}\n"))));
    *answer.status_mut() = status;
    answer.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    answer
}

fn method_not_allowed(allow: &'static str) -> Reply {
    let mut answer = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    answer
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    answer
}
