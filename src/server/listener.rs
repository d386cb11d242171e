//! Accept loops and the life of one TCP connection up to the upgrade: TLS
//! handshake and HTTP request, both within `handshake_timeout`.

use std::{io, sync::Arc, time::Duration};

use hyper::{server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, TcpStream},
    time::Instant,
};
use tracing::Instrument;

use super::Shared;
use crate::http::serve_request;

/// Pause after an accept error that is not about one connection (EMFILE,
/// ENOBUFS): long enough for descriptors to be released, short enough not to
/// notice.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Accepts until shutdown. Never returns on an accept error: per-connection
/// errors are skipped, resource exhaustion backs off and retries.
pub(super) async fn accept_loop(listener: TcpListener, secure: bool, shared: Arc<Shared>) {
    loop {
        let accepted = tokio::select! {
            () = shared.shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let span = tracing::debug_span!("connection", %peer);
                shared.tasks.spawn(serve_connection(stream, secure, shared.clone()).instrument(span));
            }
            Err(error) if is_per_connection(&error) => {}
            Err(error) => {
                tracing::warn!(%error, "accept failed; backing off");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// Errors that concern only the connection being accepted.
fn is_per_connection(error: &io::Error) -> bool {
    matches!(error.kind(), io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionRefused)
}

async fn serve_connection(stream: TcpStream, secure: bool, shared: Arc<Shared>) {
    // Frames are written in batches already; Nagle would only add latency.
    let _ = stream.set_nodelay(true);
    let snapshot = shared.snapshot.load_full();
    let deadline = Instant::now() + snapshot.config.server.handshake_timeout;
    if !secure {
        return serve_http(stream, deadline, shared).await;
    }
    let Some(acceptor) = snapshot.acceptor.clone() else { return };
    drop(snapshot);
    match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => serve_http(tls, deadline, shared).await,
        Ok(Err(error)) => tracing::debug!(%error, "TLS handshake failed"),
        Err(_) => tracing::debug!("TLS handshake timed out"),
    }
}

/// Serves HTTP on one connection until it upgrades or is refused (refusals
/// carry `Connection: close`, so a connection sees one request either way).
async fn serve_http<I>(io: I, deadline: Instant, shared: Arc<Shared>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service_shared = shared.clone();
    let service = service_fn(move |request| serve_request(request, service_shared.clone()));
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(deadline.saturating_duration_since(Instant::now()))
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = shared.shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "HTTP connection ended with an error");
    }
}
