//! Reading one PROXY protocol header (v1 text or v2 binary) from a
//! connection, byte-exact, so that whatever follows (TLS or HTTP) is left
//! untouched. Parsing is ppp's; this module only frames the bytes.

use std::{io, net::IpAddr};

use tokio::io::{AsyncRead, AsyncReadExt};

/// v1 headers are at most 107 bytes, CRLF included.
const V1_MAX_LEN: usize = 107;
/// The fixed part of a v2 header: signature, version/command, family, length.
const V2_FIXED_LEN: usize = 16;
/// Cap on the v2 address-and-TLV block: addresses take at most 216 bytes;
/// TLVs beyond a few hundred bytes are not something a load balancer sends.
const V2_MAX_BODY: usize = 1024;

/// Why a PROXY header was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyError {
    /// The connection ended or failed while the header was read.
    #[error("reading the PROXY header: {0}")]
    Io(#[from] io::Error),
    /// The bytes are not a valid PROXY header.
    #[error("malformed PROXY header: {0}")]
    Malformed(String),
}

/// Reads one header and returns the client's source address; `None` for a
/// LOCAL (v2) or UNKNOWN (v1) header, such as a load balancer's health check,
/// where the peer address stands.
pub(crate) async fn read_header<R: AsyncRead + Unpin>(
    stream: &mut R,
) -> Result<Option<IpAddr>, ProxyError> {
    let mut header = vec![0u8; 8];
    stream.read_exact(&mut header).await?;
    if header.starts_with(b"PROXY ") {
        // Byte by byte: reading ahead would swallow the TLS or HTTP bytes
        // that follow the header.
        while !header.ends_with(b"\r\n") {
            if header.len() >= V1_MAX_LEN {
                return Err(ProxyError::Malformed(
                    "v1 header longer than 107 bytes".into(),
                ));
            }
            header.push(stream.read_u8().await?);
        }
        let text = std::str::from_utf8(&header)
            .map_err(|_| ProxyError::Malformed("v1 header is not ASCII".into()))?;
        let parsed =
            ppp::v1::Header::try_from(text).map_err(|e| ProxyError::Malformed(e.to_string()))?;
        return Ok(match parsed.addresses {
            ppp::v1::Addresses::Tcp4(addresses) => Some(addresses.source_address.into()),
            ppp::v1::Addresses::Tcp6(addresses) => Some(addresses.source_address.into()),
            ppp::v1::Addresses::Unknown => None,
        });
    }
    if header[..] != ppp::v2::PROTOCOL_PREFIX[..8] {
        return Err(ProxyError::Malformed(
            "no PROXY header where one is required".into(),
        ));
    }
    header.resize(V2_FIXED_LEN, 0);
    stream.read_exact(&mut header[8..]).await?;
    let body_len = usize::from(u16::from_be_bytes([header[14], header[15]]));
    if body_len > V2_MAX_BODY {
        return Err(ProxyError::Malformed(format!(
            "v2 header announces {body_len} bytes"
        )));
    }
    header.resize(V2_FIXED_LEN + body_len, 0);
    stream.read_exact(&mut header[V2_FIXED_LEN..]).await?;
    let parsed =
        ppp::v2::Header::try_from(&header[..]).map_err(|e| ProxyError::Malformed(e.to_string()))?;
    Ok(match (parsed.command, parsed.addresses) {
        (ppp::v2::Command::Proxy, ppp::v2::Addresses::IPv4(addresses)) => {
            Some(addresses.source_address.into())
        }
        (ppp::v2::Command::Proxy, ppp::v2::Addresses::IPv6(addresses)) => {
            Some(addresses.source_address.into())
        }
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_v1_and_leaves_the_rest() {
        let mut input: &[u8] = b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\nGET / HTTP/1.1\r\n";
        assert_eq!(
            read_header(&mut input).await.unwrap(),
            Some("203.0.113.7".parse().unwrap())
        );
        assert_eq!(input, b"GET / HTTP/1.1\r\n");
        let mut unknown: &[u8] = b"PROXY UNKNOWN\r\nrest";
        assert_eq!(read_header(&mut unknown).await.unwrap(), None);
        assert_eq!(unknown, b"rest");
    }

    #[tokio::test]
    async fn reads_v2_and_leaves_the_rest() {
        let mut input = ppp::v2::PROTOCOL_PREFIX.to_vec();
        input.extend_from_slice(&[
            0x21, 0x11, 0, 12, 198, 51, 100, 4, 10, 0, 0, 1, 0xC3, 0x50, 0x01, 0xBB,
        ]);
        input.extend_from_slice(b"\x16\x03\x01");
        let mut reader = &input[..];
        assert_eq!(
            read_header(&mut reader).await.unwrap(),
            Some("198.51.100.4".parse().unwrap())
        );
        assert_eq!(
            reader, b"\x16\x03\x01",
            "the TLS record that follows is untouched"
        );
    }

    #[tokio::test]
    async fn refuses_garbage_and_oversized_headers() {
        let mut plain: &[u8] = b"GET / HTTP/1.1\r\n\r\n";
        assert!(matches!(
            read_header(&mut plain).await,
            Err(ProxyError::Malformed(_))
        ));
        let mut long = b"PROXY TCP4 ".to_vec();
        long.extend(std::iter::repeat_n(b'1', 200));
        assert!(matches!(
            read_header(&mut &long[..]).await,
            Err(ProxyError::Malformed(_))
        ));
        let mut huge = ppp::v2::PROTOCOL_PREFIX.to_vec();
        huge.extend_from_slice(&[0x21, 0x11, 0xFF, 0xFF]);
        assert!(matches!(
            read_header(&mut &huge[..]).await,
            Err(ProxyError::Malformed(_))
        ));
    }
}

/// The PROXY part of the fuzz harness (`src/fuzz.rs` says how to run it
/// longer): random and mutated headers are read exactly or refused.
#[cfg(test)]
mod fuzz {
    use proptest::{collection::vec, prelude::*, sample::select};

    use super::*;

    /// What follows a PROXY header: the start of a TLS ClientHello.
    const AFTER_HEADER: &[u8] = b"\x16\x03\x01\x02\x00";

    /// Valid v1 and v2 headers (each followed by [`AFTER_HEADER`]).
    fn proxy_seeds() -> Vec<Vec<u8>> {
        let v2 = |command: u8, family: u8, addresses: &[u8]| {
            let mut header = ppp::v2::PROTOCOL_PREFIX.to_vec();
            header.extend_from_slice(&[command, family]);
            header.extend_from_slice(&(addresses.len() as u16).to_be_bytes());
            header.extend_from_slice(addresses);
            header
        };
        let mut ipv6 = vec![0x20, 0x01, 0x0d, 0xb8];
        ipv6.resize(32, 7);
        ipv6.extend_from_slice(&[0xC3, 0x50, 0x01, 0xBB]);
        let headers = vec![
            b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\n".to_vec(),
            b"PROXY TCP6 2001:db8::1 2001:db8::2 51234 443\r\n".to_vec(),
            b"PROXY UNKNOWN\r\n".to_vec(),
            v2(
                0x21,
                0x11,
                &[198, 51, 100, 4, 10, 0, 0, 1, 0xC3, 0x50, 0x01, 0xBB],
            ),
            v2(0x21, 0x21, &ipv6),
            v2(0x20, 0x00, &[]),
        ];
        headers
            .into_iter()
            .map(|header| [&header[..], AFTER_HEADER].concat())
            .collect()
    }

    proptest! {
        #![proptest_config(crate::fuzz::cases())]

        #[test]
        fn a_proxy_header_is_read_exactly_or_refused(
            bytes in prop_oneof![
                3 => crate::fuzz::mutated(proxy_seeds()),
                1 => vec(any::<u8>(), 0..120),
                1 => select(proxy_seeds()),
            ],
        ) {
            let runtime = crate::fuzz::runtime();
            let mut rest = &bytes[..];
            let result = runtime.block_on(read_header(&mut rest));
            let consumed = bytes.len() - rest.len();
            if result.is_ok() {
                if bytes.starts_with(b"PROXY ") {
                    prop_assert!(bytes[..consumed].ends_with(b"\r\n"));
                }
                if proxy_seeds().contains(&bytes) {
                    prop_assert_eq!(rest, AFTER_HEADER, "the bytes after it are untouched");
                }
            }
        }
    }
}
