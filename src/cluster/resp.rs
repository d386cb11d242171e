//! RESP2, the Redis wire protocol, as far as the link speaks it: commands
//! are arrays of bulk strings; replies and pub/sub pushes are simple
//! strings, errors, integers, bulk strings and arrays of those.
//!
//! The parser works on a growing read buffer: it either takes one whole
//! value off its front or reports that more bytes are needed, never
//! consuming a partial value.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// How deeply arrays may nest. Redis's replies to the commands the link
/// sends nest at most four deep (`CLUSTER SHARDS`); the bound keeps a
/// corrupt stream from recursing without limit.
const MAX_DEPTH: usize = 8;

/// The largest bulk string or array length accepted, matching Redis's own
/// `proto-max-bulk-len` default (512 MiB): anything longer is corruption.
const MAX_LENGTH: i64 = 512 * 1024 * 1024;

/// One RESP2 value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    /// `+OK`
    Simple(Bytes),
    /// `-ERR ...`: the whole message, error code first.
    Error(Bytes),
    /// `:42`
    Integer(i64),
    /// `$3 foo`, or `$-1` (nil).
    Bulk(Option<Bytes>),
    /// `*2 ...`, or `*-1` (nil).
    Array(Option<Vec<Value>>),
}

impl Value {
    /// The bytes of a simple or bulk string.
    pub(crate) fn as_bytes(&self) -> Option<&Bytes> {
        match self {
            Self::Simple(bytes) | Self::Bulk(Some(bytes)) => Some(bytes),
            _ => None,
        }
    }

    /// The integer, also when Redis sent it as a string.
    pub(crate) fn as_integer(&self) -> Option<i64> {
        match self {
            Self::Integer(value) => Some(*value),
            other => std::str::from_utf8(other.as_bytes()?).ok()?.parse().ok(),
        }
    }

    /// The elements of a (non-nil) array.
    pub(crate) fn as_array(&self) -> Option<&[Value]> {
        match self {
            Self::Array(Some(items)) => Some(items),
            _ => None,
        }
    }
}

/// The stream is not RESP2.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed reply from redis: {0}")]
pub(crate) struct ProtocolError(&'static str);

/// Takes one whole value off the front of `buf`, or returns `None` (and
/// leaves `buf` as it is) when the value is not complete yet.
pub(crate) fn parse(buf: &mut BytesMut) -> Result<Option<Value>, ProtocolError> {
    let mut cursor = 0;
    match parse_at(buf, &mut cursor, 0)? {
        Some(value) => {
            buf.advance(cursor);
            Ok(Some(value))
        }
        None => Ok(None),
    }
}

fn parse_at(buf: &[u8], cursor: &mut usize, depth: usize) -> Result<Option<Value>, ProtocolError> {
    let Some(line) = line_at(buf, *cursor) else {
        return Ok(None);
    };
    let Some((&kind, rest)) = line.split_first() else {
        return Err(ProtocolError("empty line"));
    };
    let after_line = *cursor + line.len() + 2;
    let value = match kind {
        b'+' => Value::Simple(Bytes::copy_from_slice(rest)),
        b'-' => Value::Error(Bytes::copy_from_slice(rest)),
        b':' => Value::Integer(number(rest)?),
        b'$' => {
            let len = length(rest)?;
            let Some(len) = len else {
                *cursor = after_line;
                return Ok(Some(Value::Bulk(None)));
            };
            let end = after_line + len;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(ProtocolError("bulk string not followed by CRLF"));
            }
            *cursor = end + 2;
            return Ok(Some(Value::Bulk(Some(Bytes::copy_from_slice(
                &buf[after_line..end],
            )))));
        }
        b'*' => {
            if depth >= MAX_DEPTH {
                return Err(ProtocolError("arrays nested too deeply"));
            }
            let Some(len) = length(rest)? else {
                *cursor = after_line;
                return Ok(Some(Value::Array(None)));
            };
            let mut inner = after_line;
            // Capped: a corrupt length must not reserve gigabytes up front.
            let mut items = Vec::with_capacity(len.min(1024));
            for _ in 0..len {
                match parse_at(buf, &mut inner, depth + 1)? {
                    Some(item) => items.push(item),
                    None => return Ok(None),
                }
            }
            *cursor = inner;
            return Ok(Some(Value::Array(Some(items))));
        }
        _ => return Err(ProtocolError("unknown type byte")),
    };
    *cursor = after_line;
    Ok(Some(value))
}

/// The line starting at `start`, without its CRLF, if the CRLF has arrived.
fn line_at(buf: &[u8], start: usize) -> Option<&[u8]> {
    let rest = buf.get(start..)?;
    let end = rest.windows(2).position(|pair| pair == b"\r\n")?;
    Some(&rest[..end])
}

fn number(digits: &[u8]) -> Result<i64, ProtocolError> {
    std::str::from_utf8(digits)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or(ProtocolError("not an integer"))
}

/// A bulk or array length: `None` for nil (-1).
fn length(digits: &[u8]) -> Result<Option<usize>, ProtocolError> {
    match number(digits)? {
        -1 => Ok(None),
        len if (0..=MAX_LENGTH).contains(&len) => Ok(Some(len as usize)),
        _ => Err(ProtocolError("length out of range")),
    }
}

/// Appends one command (an array of bulk strings) to `out`.
pub(crate) fn encode_command(out: &mut BytesMut, args: &[&[u8]]) {
    let size: usize = args.iter().map(|arg| arg.len() + 16).sum();
    out.reserve(size + 16);
    header(out, b'*', args.len());
    for arg in args {
        header(out, b'$', arg.len());
        out.put_slice(arg);
        out.put_slice(b"\r\n");
    }
}

/// One command as its own frame.
pub(crate) fn command(args: &[&[u8]]) -> Bytes {
    let mut out = BytesMut::new();
    encode_command(&mut out, args);
    out.freeze()
}

fn header(out: &mut BytesMut, kind: u8, len: usize) {
    out.put_u8(kind);
    out.put_slice(len.to_string().as_bytes());
    out.put_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Value {
        Value::Bulk(Some(Bytes::copy_from_slice(text.as_bytes())))
    }

    #[test]
    fn parses_every_kind() {
        let table: &[(&[u8], Value)] = &[
            (b"+OK\r\n", Value::Simple(Bytes::from_static(b"OK"))),
            (b"-ERR no\r\n", Value::Error(Bytes::from_static(b"ERR no"))),
            (b":-12\r\n", Value::Integer(-12)),
            (b"$3\r\nfoo\r\n", bulk("foo")),
            (b"$0\r\n\r\n", bulk("")),
            (b"$-1\r\n", Value::Bulk(None)),
            (b"*-1\r\n", Value::Array(None)),
            (b"*0\r\n", Value::Array(Some(vec![]))),
            (
                b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$4\r\na\r\nb\r\n",
                Value::Array(Some(vec![bulk("message"), bulk("ch"), bulk("a\r\nb")])),
            ),
            (
                b"*2\r\n*1\r\n:1\r\n+x\r\n",
                Value::Array(Some(vec![
                    Value::Array(Some(vec![Value::Integer(1)])),
                    Value::Simple(Bytes::from_static(b"x")),
                ])),
            ),
        ];
        for (wire, expected) in table {
            let mut buf = BytesMut::from(&wire[..]);
            assert_eq!(
                parse(&mut buf).unwrap().as_ref(),
                Some(expected),
                "{wire:?}"
            );
            assert!(buf.is_empty(), "{wire:?} left {buf:?}");
        }
    }

    #[test]
    fn an_incomplete_value_is_left_in_the_buffer_at_every_cut() {
        let wire: &[u8] = b"*3\r\n$8\r\nsmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n:7\r\n";
        let first_len = wire.len() - 4;
        for cut in 0..first_len {
            let mut buf = BytesMut::from(&wire[..cut]);
            assert_eq!(parse(&mut buf).unwrap(), None, "cut at {cut}");
            assert_eq!(buf.len(), cut);
        }
        let mut buf = BytesMut::from(wire);
        assert!(matches!(
            parse(&mut buf).unwrap(),
            Some(Value::Array(Some(_)))
        ));
        assert_eq!(parse(&mut buf).unwrap(), Some(Value::Integer(7)));
        assert_eq!(parse(&mut buf).unwrap(), None);
    }

    #[test]
    fn rejects_what_is_not_resp() {
        for wire in [
            &b"?x\r\n"[..],
            b"$3\r\nfooX\r\n",
            b":abc\r\n",
            b"$-2\r\n",
            b"\r\n",
            b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",
        ] {
            assert!(parse(&mut BytesMut::from(wire)).is_err(), "{wire:?}");
        }
    }

    #[test]
    fn encodes_commands_as_arrays_of_bulk_strings() {
        assert_eq!(
            &command(&[b"PUBLISH", b"ch", b""])[..],
            b"*3\r\n$7\r\nPUBLISH\r\n$2\r\nch\r\n$0\r\n\r\n"
        );
        let mut round = BytesMut::from(&command(&[b"a", b"\r\n"])[..]);
        assert_eq!(
            parse(&mut round).unwrap(),
            Some(Value::Array(Some(vec![bulk("a"), bulk("\r\n")])))
        );
    }
}
