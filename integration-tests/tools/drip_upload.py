#!/usr/bin/env python3
"""An upload in one-byte chunks, each its own TCP segment (loopback only).

Usage: drip_upload.py PORT PATH N

Sends `POST PATH` with Transfer-Encoding: chunked, then N chunks of one byte ("1\\r\\nx\\r\\n"),
each in its own send with TCP_NODELAY, as fast as the proxy takes them, and never the last
chunk. Then waits up to 2 s for an answer and prints one JSON object: {"sent": chunks sent,
"seconds", "error": what ended the sending early or null, "answer": the first line of an
answer or null}. Each chunk that reaches the tunnel apart from the others is an HTTP/2 DATA
frame of one byte: what h2's small-frame budget counts.
"""
import json
import socket
import sys
import time

port, path, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
s = socket.create_connection(("127.0.0.1", port), timeout=30)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
s.sendall(f"POST {path} HTTP/1.1\r\nHost: drip\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
sent, error, started = 0, None, time.monotonic()
for _ in range(n):
    try:
        s.sendall(b"1\r\nx\r\n")
    except OSError as e:
        error = str(e)
        break
    sent += 1
seconds = round(time.monotonic() - started, 1)
answer = None
try:
    s.settimeout(2)
    answer = s.recv(200).split(b"\r\n")[0].decode("latin-1") or None
except OSError:
    pass
print(json.dumps({"sent": sent, "seconds": seconds, "error": error, "answer": answer}))
