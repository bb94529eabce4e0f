#!/usr/bin/env python3
"""Send one raw HTTP/1.1 request (Connection: close) and report what came back.

Usage: rawhttp.py HOST PORT METHOD PATH [TIMEOUT]
Prints the status line and headers as received, then a last line
"BODY-BYTES N": the number of bytes that followed the header block
before the server closed the connection (or TIMEOUT seconds passed).
"""
import socket
import sys
import time

host, port, method, path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
timeout = float(sys.argv[5]) if len(sys.argv) > 5 else 5.0
s = socket.create_connection((host, port), timeout=timeout)
s.sendall(("%s %s HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n\r\n" % (method, path, host, port)).encode("latin-1"))
data = b""
deadline = time.monotonic() + timeout
try:
    while time.monotonic() < deadline:
        s.settimeout(max(0.05, deadline - time.monotonic()))
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
except socket.timeout:
    pass
s.close()
head, sep, body = data.partition(b"\r\n\r\n")
sys.stdout.write(head.decode("latin-1") + "\n")
print("BODY-BYTES %d" % (len(body) if sep else -1))
