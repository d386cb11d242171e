//! A session gives its reader (its read buffer, the reading loop)
//! back when its client goes quiet, and makes a new one when it speaks
//! again: whatever spans the quiet must survive it. A raw client on an echo
//! channel with a quick heartbeat, so that half a ping interval (the quiet
//! that counts) passes between its frames while it waits for pings.

mod common;

use common::*;
use tokio::{io::AsyncWriteExt, net::TcpStream};

fn config() -> String {
    r#"
[limits]
ping_interval = "100ms"

[[channel]]
name = "echo"
path = "/echo"
kind = "echo"
"#
    .to_owned()
}

/// Reads frames until one that is not a ping (answering none), and returns
/// it.
async fn next_data_frame(stream: &mut TcpStream) -> (u8, Vec<u8>) {
    loop {
        let frame = read_server_frame(stream).await.expect("a frame");
        if frame.0 & 0x0F != 0x9 {
            return frame;
        }
    }
}

/// Waits for two pings: more than half a ping interval of quiet.
async fn wait_two_pings(stream: &mut TcpStream) {
    for _ in 0..2 {
        let (first, _) = read_server_frame(stream).await.expect("a ping");
        assert_eq!(first & 0x0F, 0x9, "only pings while the client is quiet");
    }
}

#[tokio::test]
async fn messages_and_fragments_span_a_quiet_client() {
    let server = start(&config()).await;
    let mut stream = TcpStream::connect(server.ws).await.unwrap();
    upgrade(&mut stream, "/echo").await;

    // A pong after a quiet: the reader is given back once it is read.
    wait_two_pings(&mut stream).await;
    stream.write_all(&client_frame(0x8A, 0, b"")).await.unwrap();
    wait_two_pings(&mut stream).await;

    // A message after the quiet comes back whole.
    stream
        .write_all(&client_frame(0x81, 5, b"hello"))
        .await
        .unwrap();
    assert_eq!(
        next_data_frame(&mut stream).await,
        (0x81, b"hello".to_vec())
    );

    // A text message whose fragments have quiets between them, the first
    // one cut inside a UTF-8 character: joined and checked whole.
    let word = "héllo wörld".as_bytes();
    let (head, rest) = word.split_at(2);
    let (middle, tail) = rest.split_at(5);
    stream
        .write_all(&client_frame(0x01, head.len() as u64, head))
        .await
        .unwrap();
    wait_two_pings(&mut stream).await;
    stream
        .write_all(&client_frame(0x00, middle.len() as u64, middle))
        .await
        .unwrap();
    wait_two_pings(&mut stream).await;
    stream
        .write_all(&client_frame(0x80, tail.len() as u64, tail))
        .await
        .unwrap();
    assert_eq!(next_data_frame(&mut stream).await, (0x81, word.to_vec()));

    // A frame split across a quiet, its header cut in two: read whole.
    let frame = client_frame(0x82, 3, b"abc");
    stream.write_all(&frame[..1]).await.unwrap();
    wait_two_pings(&mut stream).await;
    stream.write_all(&frame[1..]).await.unwrap();
    assert_eq!(next_data_frame(&mut stream).await, (0x82, b"abc".to_vec()));

    // And the connection still closes cleanly.
    stream
        .write_all(&client_frame(0x88, 2, &1000u16.to_be_bytes()))
        .await
        .unwrap();
    assert_eq!(read_close_code(&mut stream).await, Some(1000));
}
