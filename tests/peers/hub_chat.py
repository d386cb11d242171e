#!/usr/bin/env python3
"""A three-user chat over wsedge's hub protocol, with Python's `websockets`:
what a Node tutorial's chat does, against the server's JSON protocol.

    hub_chat.py URL TOKEN_ALICE TOKEN_BOB TOKEN_CAROL

Each user connects with its token as `Authorization: Bearer`, and then:
alice and bob join "lobby" (with request ids, answered `joined` with
`replyTo`); carol joins and alice and bob are told (presence); alice says
hello to the room (bob and carol get it stamped `from: alice`, alice an
ack that counts 2); bob sends carol a dm; carol leaves and the others are
told; a message to a room alice is not in is an error with its `replyTo`.

Prints one `ok: ...` line per check; exits 0 when all held, 1 with a FAIL:
line otherwise.
"""

import asyncio
import json
import sys

from websockets.asyncio.client import connect

TIMEOUT = 10


def fail(message):
    print(f"FAIL: {message}")
    sys.exit(1)


async def expect(ws, wanted, what, may_precede=()):
    """The next message, which must equal `wanted` (a dict), after any of
    `may_precede` (notices whose timing the server coalesces)."""
    while True:
        try:
            got = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        except Exception as error:  # noqa: BLE001 - any failure is the test's
            fail(f"{what}: no message ({error!r})")
        if got in may_precede:
            continue
        if got != wanted:
            fail(f"{what}: got {got}, wanted {wanted}")
        print(f"ok: {what}")
        return


async def send(ws, **message):
    await ws.send(json.dumps(message))


async def main(url, tokens):
    users = {}
    for name, token in zip(["alice", "bob", "carol"], tokens):
        users[name] = await connect(url, additional_headers={"Authorization": f"Bearer {token}"})
    alice, bob, carol = users["alice"], users["bob"], users["carol"]

    await send(alice, type="join", room="lobby", id=1)
    await expect(alice, {"type": "joined", "room": "lobby", "replyTo": 1}, "alice joined")
    await send(bob, type="join", room="lobby", id="b1")
    await expect(bob, {"type": "joined", "room": "lobby", "replyTo": "b1"}, "bob joined")
    # Alice's own join may still be waiting to be coalesced when bob joins
    # (notices wait up to 250 ms): then bob is told of it.
    alice_there = [{"type": "presence", "event": "join", "room": "lobby", "user": "alice"}]
    await expect(alice, {"type": "presence", "event": "join", "room": "lobby", "user": "bob"}, "alice sees bob join")

    await send(carol, type="join", room="lobby")
    await expect(carol, {"type": "joined", "room": "lobby"}, "carol joined")
    bob_there = alice_there + [{"type": "presence", "event": "join", "room": "lobby", "user": "bob"}]
    for name, ws in [("alice", alice), ("bob", bob)]:
        await expect(ws, {"type": "presence", "event": "join", "room": "lobby", "user": "carol"}, f"{name} sees carol join", alice_there)

    await send(alice, type="message", room="lobby", payload={"text": "hello"}, id=2)
    await expect(alice, {"type": "ack", "delivered": 2, "replyTo": 2}, "alice's message acknowledged")
    for name, ws in [("bob", bob), ("carol", carol)]:
        await expect(ws, {"type": "message", "room": "lobby", "from": "alice", "payload": {"text": "hello"}}, f"{name} got alice's message", bob_there)

    await send(bob, type="dm", to="carol", payload="psst")
    await expect(carol, {"type": "dm", "from": "bob", "payload": "psst"}, "carol got bob's dm")

    await send(carol, type="leave", room="lobby", id=3)
    await expect(carol, {"type": "left", "room": "lobby", "replyTo": 3}, "carol left")
    for name, ws in [("alice", alice), ("bob", bob)]:
        await expect(ws, {"type": "presence", "event": "leave", "room": "lobby", "user": "carol"}, f"{name} sees carol leave")

    await send(alice, type="message", room="elsewhere", payload=1, id=4)
    try:
        error = json.loads(await asyncio.wait_for(alice.recv(), TIMEOUT))
    except Exception as problem:  # noqa: BLE001
        fail(f"no error answer ({problem!r})")
    if error.get("type") != "error" or error.get("code") != "not_joined" or error.get("replyTo") != 4:
        fail(f"not_joined error: got {error}")
    print("ok: a message to a room not joined is an error")

    for ws in users.values():
        await ws.close()
    print("ok: done")


if __name__ == "__main__":
    if len(sys.argv) != 5:
        fail("usage: hub_chat.py URL TOKEN_ALICE TOKEN_BOB TOKEN_CAROL")
    asyncio.run(main(sys.argv[1], sys.argv[2:]))
