//! Deferred accept: the kernel hands a listener's connection over only once
//! its first bytes have arrived (`TCP_DEFER_ACCEPT`, Linux).
//!
//! Every client of this server speaks first (the upgrade request, a TLS
//! ClientHello, a PROXY header), so a deferred connection is accepted and
//! read on one wake-up instead of two: in a burst of connects a new
//! connection costs the server about a third less CPU, and the clients'
//! side one wake-up of the server less. A connection that sends nothing is
//! held by the kernel for about a second, then handed over and timed out at
//! `handshake_timeout` like any other.
//!
//! std's `set_deferaccept` is not stable yet and socket2 does not have it:
//! this is the crate's one `unsafe` block, a `setsockopt` with a `c_int`.

use std::io;

use tokio::net::TcpListener;

/// How long the kernel holds a connection that has sent nothing, in seconds
/// (it rounds this to SYN-ACK retransmissions: one, after about a second).
#[cfg(target_os = "linux")]
const DEFER_SECS: libc::c_int = 1;

/// Defers `socket`'s accepts by [`DEFER_SECS`].
#[cfg(target_os = "linux")]
pub(super) fn defer_accept(socket: &TcpListener) -> io::Result<()> {
    use std::os::fd::AsRawFd;

    let value = DEFER_SECS;
    // SAFETY: the descriptor stays open while `socket` is borrowed, and the
    // option is read as a `c_int` of exactly the length passed.
    #[allow(unsafe_code)]
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&raw const value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Elsewhere the option does not exist: accepts are not deferred.
#[cfg(not(target_os = "linux"))]
pub(super) fn defer_accept(_socket: &TcpListener) -> io::Result<()> {
    Ok(())
}
