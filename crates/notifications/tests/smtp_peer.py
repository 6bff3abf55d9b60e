#!/usr/bin/env python3
"""A real SMTP server for the notifications crate's SMTP tests (tests/smtp.rs).

It is aiosmtpd's SMTP protocol on an asyncio server bound to 127.0.0.1:PORT (0: any free port).
It reports on stdout, one JSON object a line, flushed at once:

- {"event": "ready", "port": N} once it listens;
- {"event": "data", ...} for each DATA command, with what it answered and what it received,
  parsed by Python's own email package: an independent reader of what lettre wrote.

With --refuse-data N it answers the first N DATA commands with a transient 451, as a relay that
is overloaded or greylisting does, and accepts from then on.

It exits when its stdin closes, so a test that dies (even by SIGKILL) leaves no server behind.
Exit status 3 means aiosmtpd is not installed (.ci/peers.sh installs it).
"""

import argparse
import asyncio
import email
import email.policy
import json
import os
import sys
import threading
import time

try:
    from aiosmtpd.smtp import SMTP
except ImportError:
    print("smtp_peer: aiosmtpd is not installed; run .ci/peers.sh", file=sys.stderr)
    sys.exit(3)


def emit(event):
    print(json.dumps(event), flush=True)


def describe(raw):
    """The parts of a message as the tests check them: headers, MIME tree, decoded leaves."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    sender = message["From"]
    parts = []
    for part in message.walk():
        entry = {
            "content_type": part.get_content_type(),
            "params": {key: value for key, value in part.get_params() or []},
            "disposition": part.get_content_disposition(),
            "filename": part.get_filename(),
        }
        if not part.is_multipart():
            payload = part.get_payload(decode=True) or b""
            entry["content"] = payload.decode("utf-8", errors="replace")
        parts.append(entry)
    return {
        "to": str(message["To"]),
        "from": str(sender),
        "from_name": sender.addresses[0].display_name if sender else None,
        "subject": str(message["Subject"]),
        "message_id": str(message["Message-ID"]),
        "parts": parts,
        "defects": [repr(defect) for defect in message.defects],
    }


class Handler:
    def __init__(self, refuse_data):
        self.refuse_data = refuse_data
        self.attempts = 0

    async def handle_DATA(self, server, session, envelope):
        self.attempts += 1
        refused = self.attempts <= self.refuse_data
        reply = "451 4.3.0 Try again later" if refused else "250 2.0.0 OK: queued"
        event = {
            "event": "data",
            "attempt": self.attempts,
            "at": time.monotonic(),
            "reply": reply,
            "accepted": not refused,
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
        }
        event.update(describe(envelope.original_content or envelope.content))
        emit(event)
        return reply


def exit_when_stdin_closes():
    while sys.stdin.buffer.read(4096):
        pass
    os._exit(0)


async def serve(port, refuse_data):
    handler = Handler(refuse_data)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="smtp-peer.test"), host="127.0.0.1", port=port
    )
    emit({"event": "ready", "port": server.sockets[0].getsockname()[1]})
    async with server:
        await server.serve_forever()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--refuse-data", type=int, default=0)
    args = parser.parse_args()
    threading.Thread(target=exit_when_stdin_closes, daemon=True).start()
    asyncio.run(serve(args.port, args.refuse_data))


if __name__ == "__main__":
    main()
