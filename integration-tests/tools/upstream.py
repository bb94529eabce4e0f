#!/usr/bin/env python3
"""A tiny local HTTP service for the `c --upstream` cases.

Usage: upstream.py --port-file FILE --trigger-dir DIR

Binds 127.0.0.1 on a free port (port 0) and writes that port to FILE.
  GET  /                 200 "upstream ok"
  GET  /info...          JSON {"method", "target" (the raw request target), "headers": [[k, v]...]}
  GET  /cookies          200 with two Set-Cookie headers
  GET  /redirect         302 to /target (a proxy must not follow it)
  GET  /no-content       204
  GET  /delay?s=N&id=ID  waits N seconds (at most 60) before answering 200; creates DIR/ID.aborted
                         if its client closed the connection meanwhile (and stops waiting)
  GET  /until-close      1 MiB body delimited by closing the connection (no Content-Length,
                         no chunking, Connection: close), as old HTTP/1.0-style apps do
  POST|PUT /echo         echoes the request body (Content-Length or chunked) back,
                         with X-Received-Length / X-Received-Sha256 of what arrived
                         and X-Echo-Test = the request's X-Revmux-Test header
  POST /hold?id=ID       never reads the request body (a stuck application): waits until DIR/ID
                         exists (then answers 200), or its client goes away (then creates
                         DIR/ID.aborted), at most 60 s
  ANY  /request-line...  JSON {"request_line" (exactly as received), "host", "body_length"};
                         reads the request body first (any method: GET, POST, PUT, PATCH, DELETE)
  GET  /many-headers     200 with 300 header lines X-H-0 ... X-H-299
  GET|POST /huge-head    200 whose head carries a 300 KB header (a proxy must refuse it alone)
  GET  /cl-and-chunked   200 with both Content-Length: 5 (stale) and Transfer-Encoding: chunked;
                         the chunked body is CL_AND_CHUNKED_BODY (200 KiB)
  GET  /events?id=ID     text/event-stream: sends "data: first", then waits (at most
                         30 s) until DIR/ID exists, sends "data: second" and ends;
                         then creates DIR/ID.done (DIR/ID.timeout if it gave up,
                         DIR/ID.aborted if its client closed the connection first)
"""
import argparse
import hashlib
import json
import os
import select
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

TRIGGER_DIR = "."
UNTIL_CLOSE_BODY = hashlib.shake_256(b"revmux-until-close").digest(1024 * 1024)
CL_AND_CHUNKED_BODY = hashlib.shake_256(b"revmux-cl-and-chunked").digest(200 * 1024)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # to stderr, one line each
        sys.stderr.write("upstream: %s %s\n" % (self.address_string(), fmt % args))

    def _send(self, status, body, ctype="text/plain; charset=utf-8", extra=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts = []
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline(65537)  # CRLF after each chunk
        n = int(self.headers.get("Content-Length", "0") or "0")
        return self.rfile.read(n) if n else b""

    def _request_line(self):
        body = self._read_body()
        info = {"request_line": self.requestline, "host": self.headers.get("Host"), "body_length": len(body)}
        return self._send(200, json.dumps(info).encode(), "application/json")

    def _quietly(self, write):
        """Write a response the client may refuse halfway (it closes the connection)."""
        try:
            write()
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True

    def _huge_head(self):
        self._read_body()

        def write():
            self.send_response(200)
            self.send_header("X-Huge", "h" * (300 * 1000))
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
            self.wfile.flush()

        self._quietly(write)

    def _cl_and_chunked(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", "5")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i in range(0, len(CL_AND_CHUNKED_BODY), 50000):
            self._chunk(CL_AND_CHUNKED_BODY[i:i + 50000])
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def do_GET(self):
        url = urlsplit(self.path)
        if url.path.startswith("/request-line"):
            return self._request_line()
        if url.path == "/many-headers":
            return self._send(200, b"many headers\n", extra=[("X-H-%d" % i, "value-%d" % i) for i in range(300)])
        if url.path == "/huge-head":
            return self._huge_head()
        if url.path == "/cl-and-chunked":
            return self._cl_and_chunked()
        if url.path == "/events":
            return self._events(parse_qs(url.query).get("id", ["default"])[0])
        if url.path == "/":
            return self._send(200, b"upstream ok\n")
        if url.path.startswith("/info"):
            info = {"method": self.command, "target": self.path, "headers": [[k, v] for k, v in self.headers.items()]}
            return self._send(200, json.dumps(info).encode(), "application/json")
        if url.path == "/cookies":
            return self._send(200, b"cookies\n", extra=(("Set-Cookie", "a=1; Path=/"), ("Set-Cookie", "b=2; Path=/")))
        if url.path == "/redirect":
            return self._send(302, b"", extra=(("Location", "/target"),))
        if url.path == "/delay":
            q = parse_qs(url.query)
            ident = os.path.basename(q.get("id", ["delay"])[0]) or "delay"
            deadline = time.monotonic() + min(float(q.get("s", ["5"])[0]), 60.0)
            while time.monotonic() < deadline:
                if self._peer_closed(0.05):
                    open(os.path.join(TRIGGER_DIR, ident + ".aborted"), "w").close()
                    self.close_connection = True
                    return None
            return self._send(200, b"delayed answer\n")
        if url.path == "/no-content":
            self.send_response(204)
            self.end_headers()
            return None
        if url.path == "/until-close":
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            if self.command != "HEAD":
                self.wfile.write(UNTIL_CLOSE_BODY)
            return None
        return self._send(404, b"not found\n")

    do_HEAD = do_GET

    def do_POST(self):
        url = urlsplit(self.path)
        if url.path.startswith("/request-line"):
            return self._request_line()
        if url.path == "/huge-head":
            return self._huge_head()
        if url.path == "/hold":
            ident = os.path.basename(parse_qs(url.query).get("id", ["hold"])[0]) or "hold"
            trigger = os.path.join(TRIGGER_DIR, ident)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not os.path.exists(trigger):
                if self._peer_closed(0.05):
                    open(trigger + ".aborted", "w").close()
                    self.close_connection = True
                    return None
            self.close_connection = True  # the body was never read
            return self._send(200, b"released\n")
        body = self._read_body()
        if urlsplit(self.path).path != "/echo":
            return self._send(404, b"not found\n")
        self._send(200, body, "application/octet-stream", (
            ("X-Received-Length", str(len(body))),
            ("X-Received-Sha256", hashlib.sha256(body).hexdigest()),
            ("X-Echo-Test", self.headers.get("X-Revmux-Test", "")),
        ))

    do_PUT = do_POST
    do_PATCH = do_POST
    do_DELETE = do_POST

    def _chunk(self, data: bytes):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _peer_closed(self, wait):
        """Has the client closed its side? (POLLRDHUP: seen even with unread request data.)"""
        poller = select.poll()
        poller.register(self.connection, select.POLLRDHUP | select.POLLHUP | select.POLLERR)
        return bool(poller.poll(wait * 1000))

    def _events(self, ident):
        ident = os.path.basename(ident) or "default"
        trigger = os.path.join(TRIGGER_DIR, ident)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self._chunk(b"data: first\n\n")
        deadline = time.monotonic() + 30
        while not os.path.exists(trigger) and time.monotonic() < deadline:
            if self._peer_closed(0.05):
                open(trigger + ".aborted", "w").close()
                self.close_connection = True
                return
        if os.path.exists(trigger):
            self._chunk(b"data: second\n\n")
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
            open(trigger + ".done", "w").close()
        else:
            open(trigger + ".timeout", "w").close()
            self.close_connection = True


def main():
    global TRIGGER_DIR
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--trigger-dir", required=True)
    args = ap.parse_args()
    TRIGGER_DIR = args.trigger_dir
    os.makedirs(TRIGGER_DIR, exist_ok=True)
    ThreadingHTTPServer.daemon_threads = True
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % srv.server_address[1])
    os.replace(tmp, args.port_file)
    srv.serve_forever()


if __name__ == "__main__":
    main()
