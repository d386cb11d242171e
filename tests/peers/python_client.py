#!/usr/bin/env python3
"""A permessage-deflate peer for wsedge built on Python's `websockets`.

Runs a fixed suite of messages (text and binary; compressible, random,
non-ASCII, small; the same text three times; fragmented sends; with
--with-empty also empty messages and empty fragments) against
an echo channel, or through a broadcast channel from one client to another,
and checks that every message comes back intact, of the same type and in
order. With --threshold it also checks which messages the server sent
compressed (RSV1): those of at least that many bytes, and only while the
extension is in use.

    python_client.py URL [--cafile PEM | --insecure] [--tls-version 1.2|1.3]
        [--scenario echo|broadcast]
        [--offer default|none|custom] [--client-max-window-bits N]
        [--server-max-window-bits N] [--client-no-context-takeover]
        [--server-no-context-takeover] [--threshold N] [--plain-receiver]
        [--with-empty]

Prints what it checked, the offered and negotiated Sec-WebSocket-Extensions
first; exits 0 when everything matched, 1 with a FAIL: line otherwise.
"""

import argparse
import asyncio
import random
import ssl
import sys

from websockets.asyncio.client import connect
from websockets.extensions import permessage_deflate
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.frames import Opcode

# RSV1 and wire size of every data message's first frame, per connection, as
# received (recorded by the extension's decoder, which sees frames before
# inflating; the server never fragments).
RECEIVED_RSV1 = {}

_original_decode = permessage_deflate.PerMessageDeflate.decode


def _recording_decode(self, frame, *args, **kwargs):
    if frame.opcode in (Opcode.TEXT, Opcode.BINARY):
        RECEIVED_RSV1.setdefault(id(self), []).append((frame.rsv1, len(frame.data)))
    return _original_decode(self, frame, *args, **kwargs)


permessage_deflate.PerMessageDeflate.decode = _recording_decode


class Mismatch(Exception):
    pass


def suite(with_empty):
    """(label, message) pairs; a list message is sent fragmented. Empty
    messages (and empty fragments) only `with_empty`."""
    rng = random.Random(7692)
    lines = []
    seq = 0
    while sum(len(line) for line in lines) < 100 * 1024:
        lines.append('{"seq":%d,"user":"alice","text":"hello, compressible world"}\n' % seq)
        seq += 1
    json_text = "".join(lines)[: 100 * 1024]
    pattern = bytes(range(256)) * 400
    unicode_text = "héllo wörld ✓ 𝄞 日本語 " * 60
    words = "alpha bravo charlie delta echo foxtrot golf hotel india juliett kilo lima mike november".split()
    repeated = " ".join(rng.choice(words) + str(rng.randrange(100)) for _ in range(300))[:2048]
    messages = [
        ("compressible text 100 KiB", json_text),
        ("compressible binary 100 KiB", pattern),
        ("random binary 64 KiB", rng.randbytes(64 * 1024)),
        ("non-ASCII text", unicode_text),
        ("small text", "hi"),
        ("small binary", b"\x00\x01\x02"),
        ("2 KiB text, 1st time", repeated),
        ("2 KiB text, 2nd time", repeated),
        ("2 KiB text, 3rd time", repeated),
        (
            "fragmented text",
            [json_text[:10_000], unicode_text, "ü" * 3000, json_text[:5_000]],
        ),
        (
            "fragmented binary",
            [pattern[:40_000], rng.randbytes(5_000), b"\xff" * 10_000],
        ),
        ("text after fragments", json_text[:3000]),
    ]
    if with_empty:
        messages += [
            ("empty text", ""),
            ("small text after an empty one", "after"),
            ("empty binary", b""),
            ("empty binary again", b""),
            ("fragmented text with empty fragments", ["", "abc", "", "é"]),
            ("fragmented binary with empty fragments", [b"", b"", b"\x01"]),
            ("fragmented binary, all empty", [b"", b""]),
            ("last message", json_text[:1000]),
        ]
    return messages


def whole(message):
    if isinstance(message, list):
        return message[0][:0].join(message)
    return message


def wire_len(message):
    message = whole(message)
    return len(message.encode()) if isinstance(message, str) else len(message)


def kind(message):
    return "text" if isinstance(whole(message), str) else "binary"


def options(args, plain=False):
    opts = {"max_size": 16 << 20, "proxy": None, "open_timeout": 20, "close_timeout": 10}
    if args.url.startswith("wss:"):
        if args.insecure:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        else:
            context = ssl.create_default_context(cafile=args.cafile)
        if args.tls_version:
            version = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}[args.tls_version]
            context.minimum_version = context.maximum_version = version
        opts["ssl"] = context
    if plain or args.offer == "none":
        opts["compression"] = None
    elif args.offer == "custom":
        opts["compression"] = None
        opts["extensions"] = [
            ClientPerMessageDeflateFactory(
                server_no_context_takeover=args.server_no_context_takeover,
                client_no_context_takeover=args.client_no_context_takeover,
                server_max_window_bits=args.server_max_window_bits,
                client_max_window_bits=args.client_max_window_bits or True,
            )
        ]
    return opts


def describe(ws, name):
    offered = ws.request.headers.get("Sec-WebSocket-Extensions", "(none)")
    answered = ws.response.headers.get("Sec-WebSocket-Extensions", "(none)")
    print(f"{name} offer: {offered}")
    print(f"{name} extensions: {answered}")
    tls = ws.transport.get_extra_info("ssl_object")
    if tls is not None:
        print(f"{name} tls: {tls.version()} {tls.cipher()[0]}")
    return answered != "(none)"


async def expect(ws, name, label, sent, threshold, deflate):
    try:
        got = await asyncio.wait_for(ws.recv(), 30)
    except asyncio.TimeoutError:
        raise Mismatch(f"{name}: no answer to {label} within 30 s")
    expected = whole(sent)
    if type(got) is not type(expected):
        raise Mismatch(f"{name}: {label}: sent {kind(sent)}, got {type(got).__name__}")
    if got != expected:
        first = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), min(len(got), len(expected)))
        raise Mismatch(
            f"{name}: {label}: payload differs (sent {len(expected)}, got {len(got)}, first difference at {first})"
        )
    flags = RECEIVED_RSV1.get(id(ws.protocol.extensions[0]), []) if ws.protocol.extensions else []
    compressed, size = flags.pop(0) if flags else (False, None)
    note = f"compressed by server: {f'yes ({size} bytes on the wire)' if compressed else 'no'}"
    if threshold is not None:
        wanted = deflate and wire_len(sent) >= threshold
        if compressed != wanted:
            raise Mismatch(
                f"{name}: {label}: {wire_len(sent)} bytes came back {'compressed' if compressed else 'uncompressed'}"
                f", expected {'compressed' if wanted else 'uncompressed'} (threshold {threshold}, deflate {deflate})"
            )
    fragments = f", {len(sent)} fragments" if isinstance(sent, list) else ""
    print(f"{name}: {kind(sent)} {wire_len(sent)} bytes{fragments} [{label}] intact, {note}")


async def echo(args):
    async with connect(args.url, **options(args)) as ws:
        deflate = describe(ws, "client")
        for label, message in suite(args.with_empty):
            await ws.send(message)
            await expect(ws, "echo", label, message, args.threshold, deflate)
    # Leaving the block closed with 1000; the server must have answered in kind.
    print(f"closed: {ws.close_code}")
    if ws.close_code != 1000:
        raise Mismatch(f"the server answered the close with {ws.close_code} ({ws.close_reason!r})")


async def broadcast(args):
    async with connect(args.url, **options(args)) as receiver, connect(args.url, **options(args)) as publisher:
        receiving = describe(receiver, "receiver")
        describe(publisher, "publisher")
        others = []
        if args.plain_receiver:
            others.append(await connect(args.url, **options(args, plain=True)))
            describe(others[0], "plain receiver")
        messages = suite(args.with_empty)
        for _, message in messages:
            await publisher.send(message)
        for label, message in messages:
            await expect(receiver, "receiver", label, message, args.threshold, receiving)
            for other in others:
                await expect(other, "plain receiver", label, message, args.threshold, False)
        for other in others:
            await other.close()
        if args.threshold is not None:
            count = sum(1 for _, m in messages if wire_len(m) >= args.threshold)
            print(f"published {len(messages)} messages, {count} of at least {args.threshold} bytes")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("--cafile", help="PEM certificate to trust for wss://")
    parser.add_argument("--insecure", action="store_true", help="do not verify the certificate")
    parser.add_argument("--tls-version", choices=["1.2", "1.3"], help="wss://: offer only this TLS version")
    parser.add_argument("--scenario", choices=["echo", "broadcast"], default="echo")
    parser.add_argument("--offer", choices=["default", "none", "custom"], default="default")
    parser.add_argument("--client-max-window-bits", type=int)
    parser.add_argument("--server-max-window-bits", type=int)
    parser.add_argument("--client-no-context-takeover", action="store_true")
    parser.add_argument("--server-no-context-takeover", action="store_true")
    parser.add_argument("--threshold", type=int, help="the server's compression threshold, to check RSV1")
    parser.add_argument("--with-empty", action="store_true", help="add empty messages and empty fragments")
    parser.add_argument("--plain-receiver", action="store_true", help="broadcast: add a receiver without compression")
    args = parser.parse_args()
    if args.url.startswith("wss:") and not (args.cafile or args.insecure):
        parser.error("wss:// needs --cafile or --insecure")
    try:
        asyncio.run(echo(args) if args.scenario == "echo" else broadcast(args))
    except Mismatch as error:
        print(f"FAIL: {error}", file=sys.stderr)
        return 1
    except Exception as error:  # a refused handshake, a close, a timeout
        print(f"FAIL: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
