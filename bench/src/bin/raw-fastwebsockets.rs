//! The ceiling of the library wsedge is built on: a minimal fastwebsockets
//! server with the same channel semantics as the benchmark's wsedge
//! configuration and no product logic (no admission policy, no send buffer
//! limits, no statistics).
//!
//! - `/echo`: every message straight back (a `FragmentCollector` over one
//!   `WebSocket`, which writes each frame itself).
//! - `/news`: every message to every other connection.
//! - `/chat/{room}`: every message to every other member of the room.
//!
//! Broadcast uses one tokio broadcast channel per channel or room; each
//! connection has its own write half (`WebSocket::split`) in a writer task.
//!
//! `raw-fastwebsockets --listen 127.0.0.1:18082`

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use bytes::Bytes;
use fastwebsockets::{FragmentCollector, Frame, OpCode, Payload, WebSocketError, upgrade};
use http_body_util::Empty;
use hyper::{Request, Response, body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::{
    net::TcpListener,
    sync::{broadcast, mpsc},
};

/// Messages a slow subscriber may fall behind by before it loses some
/// (tokio broadcast drops the oldest and reports the lag).
const BROADCAST_CAPACITY: usize = 4096;

/// (sender id, opcode, payload)
type Published = (u64, OpCode, Bytes);

struct State {
    news: broadcast::Sender<Published>,
    rooms: Mutex<HashMap<String, broadcast::Sender<Published>>>,
    next_id: AtomicU64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let listen: SocketAddr = match (args.next().as_deref(), args.next()) {
        (Some("--listen"), Some(addr)) => addr.parse()?,
        _ => anyhow::bail!("usage: raw-fastwebsockets --listen 127.0.0.1:PORT"),
    };
    let listener = TcpListener::bind(listen).await?;
    eprintln!("raw-fastwebsockets listening on ws://{listen}");
    let state = Arc::new(State {
        news: broadcast::channel(BROADCAST_CAPACITY).0,
        rooms: Mutex::default(),
        next_id: AtomicU64::new(1),
    });
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                eprintln!("accept: {error}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| serve(request, state.clone()));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

async fn serve(
    mut request: Request<Incoming>,
    state: Arc<State>,
) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    let path = request.uri().path().to_owned();
    let channel = if path == "/echo" {
        None
    } else if path == "/news" {
        Some(state.news.clone())
    } else if let Some(room) = path.strip_prefix("/chat/") {
        let mut rooms = state.rooms.lock().expect("rooms lock");
        Some(
            rooms
                .entry(room.to_owned())
                .or_insert_with(|| broadcast::channel(BROADCAST_CAPACITY).0)
                .clone(),
        )
    } else {
        return Ok(Response::builder()
            .status(404)
            .body(Empty::new())
            .expect("a valid response"));
    };
    let (response, upgrade) = upgrade::upgrade(&mut request)?;
    let id = state.next_id.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(async move {
        let result = match channel {
            None => echo(upgrade).await,
            Some(channel) => broadcast_session(upgrade, id, channel).await,
        };
        let _ = result;
    });
    Ok(response)
}

async fn echo(upgrade: upgrade::UpgradeFut) -> Result<(), WebSocketError> {
    let mut ws = FragmentCollector::new(upgrade.await?);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => return Ok(()),
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
}

async fn broadcast_session(
    upgrade: upgrade::UpgradeFut,
    id: u64,
    channel: broadcast::Sender<Published>,
) -> Result<(), WebSocketError> {
    let ws = upgrade.await?;
    let mut subscription = channel.subscribe();
    let (mut read, mut write) = ws.split(tokio::io::split);
    // Pongs and close replies from the reader go through the writer.
    let (control_tx, mut control_rx) = mpsc::unbounded_channel::<(OpCode, Bytes)>();
    let writer = tokio::spawn(async move {
        loop {
            let (opcode, payload) = tokio::select! {
                control = control_rx.recv() => match control {
                    Some(control) => control,
                    None => return,
                },
                published = subscription.recv() => match published {
                    Ok((sender, _, _)) if sender == id => continue,
                    Ok((_, opcode, payload)) => (opcode, payload),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            };
            let close = opcode == OpCode::Close;
            if write
                .write_frame(Frame::new(true, opcode, None, Payload::Borrowed(&payload)))
                .await
                .is_err()
                || close
            {
                return;
            }
        }
    });
    let mut send_control = |frame: Frame<'_>| {
        let _ = control_tx.send((frame.opcode, Bytes::copy_from_slice(&frame.payload)));
        std::future::ready(Ok::<(), WebSocketError>(()))
    };
    let result = async {
        loop {
            let frame = read.read_frame(&mut send_control).await?;
            match frame.opcode {
                OpCode::Close => return Ok(()),
                OpCode::Text | OpCode::Binary => {
                    let _ =
                        channel.send((id, frame.opcode, Bytes::copy_from_slice(&frame.payload)));
                }
                _ => {}
            }
        }
    }
    .await;
    // The writer ends once it has written the queued control frames (the
    // close reply); a stuck one is not waited for long.
    drop(control_tx);
    let abort = writer.abort_handle();
    if tokio::time::timeout(std::time::Duration::from_secs(1), writer)
        .await
        .is_err()
    {
        abort.abort();
    }
    result
}
