#!/usr/bin/env python3
"""A misbehaving local service behind `c --upstream`, for the abuse cases. Raw sockets, so
every byte of each answer is exactly as written here (http.server would tidy them up).

Usage: evil_upstream.py --port-file FILE --dir DIR

Binds 127.0.0.1 on a free port (port 0), writes the port to FILE.
  GET  /                      200 "evil ok"
  GET  /files/NAME            DIR/NAME with Content-Length (for victims' downloads)
  ANY  /record...             appends one JSON line to DIR/records.jsonl: the raw request line,
                              the Host header(s), the body's length; answers 200 "recorded"
  GET  /huge-response-header  200 with a 300 KB header (X-Huge: 'h' * 300000), body "ok"
  GET  /many-headers          200 with 300 header lines X-Line-001: value-001 ... X-Line-300
  GET  /cl-and-te             200 with both Content-Length: 7 and Transfer-Encoding: chunked;
                              the chunked body (100,000 bytes in 7 chunks) is DIR/cl-te.bin
  GET  /no-content[?zero]     204 with Content-Length: 7 (0 with ?zero; RFC 9110 forbids either,
                              frameworks send it)
  GET  /not-modified          304 with Content-Length: 5000 (the length of the unsent representation)
  GET  /gzip-te               200 with Transfer-Encoding: gzip (not chunked): a body ended by close
                              (to HEAD too: the head only, then close)
  GET  /tiny-chunks?n=N       200 chunked, N one-byte chunks (default 300,000), 1,000 per write: the
                              whole body is N bytes of "x"
  GET  /paced-chunks?n=N&us=U 200 chunked, N one-byte chunks (default 100,000), each its own write,
                              U microseconds apart (default 20): pieces too far apart for c to
                              gather, so each crosses the tunnel as a DATA frame of its own
  ANY  /unread?s=S            reads the head and never the body, answers nothing, and closes after S
                              seconds (default 60, at most 120): a stuck application
  ANY  /never                 reads the request and never answers (until the client goes away,
                              at most 120 s)
Requests without Connection: close are kept alive (c pools its connections).
"""
import argparse
import hashlib
import json
import os
import select
import socketserver
import sys
import threading
import time

DIR = "."
CL_TE_BODY = hashlib.shake_256(b"revmux-cl-te").digest(100000)
LOCK = threading.Lock()


class Handler(socketserver.BaseRequestHandler):
    def setup(self):
        self.buf = b""
        self.request.settimeout(130)

    def read_until(self, marker, limit=1 << 20):
        while marker not in self.buf:
            if len(self.buf) > limit:
                raise ConnectionError("head too large")
            chunk = self.request.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        head, self.buf = self.buf.split(marker, 1)
        return head

    def read_exact(self, n):
        while len(self.buf) < n:
            chunk = self.request.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_body(self, headers):
        te = b",".join(v for k, v in headers if k == b"transfer-encoding").lower()
        if b"chunked" in te:
            total = 0
            while True:
                size = int(self.read_until(b"\r\n").split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.read_until(b"\r\n"):
                        pass  # trailers, up to the empty line
                    return total
                total += len(self.read_exact(size))
                self.read_until(b"\r\n")
        n = int(dict(headers).get(b"content-length", b"0") or b"0")
        self.read_exact(n)
        return n

    def send(self, status, headers, body=b""):
        out = [b"HTTP/1.1 %s" % status.encode()] + [b"%s: %s" % (k.encode(), v) for k, v in headers]
        self.request.sendall(b"\r\n".join(out) + b"\r\n\r\n" + body)

    def plain(self, body, extra=()):
        self.send("200 OK", [("Content-Type", b"text/plain"), ("Content-Length", str(len(body)).encode())] + list(extra), body)

    def handle(self):
        try:
            while self.one():
                pass
        except (ConnectionError, OSError, ValueError):
            pass

    def one(self):
        head = self.read_until(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        request_line = lines[0]
        headers = []
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            headers.append((k.strip().lower(), v.strip()))
        method, target = request_line.split(b" ")[0:2]
        path = target.split(b"?")[0]
        if b"://" in path:  # absolute-form: route it anyway (and /record records it as it came)
            path = b"/" + path.split(b"://", 1)[1].partition(b"/")[2]
        if path == b"/unread":
            # A stuck application: the body stays unread, nothing is answered.
            time.sleep(min(float(dict(kv.partition(b"=")[::2] for kv in target.partition(b"?")[2].split(b"&")
                                      if kv).get(b"s", b"60")), 120))
            return False
        body_len = self.read_body(headers)
        keep = b"close" not in b",".join(v for k, v in headers if k == b"connection").lower()
        if path.startswith(b"/record"):
            rec = {"request_line": request_line.decode("latin-1"),
                   "host": [v.decode("latin-1") for k, v in headers if k == b"host"],
                   "body_len": body_len}
            with LOCK, open(os.path.join(DIR, "records.jsonl"), "a") as f:
                f.write(json.dumps(rec) + "\n")
            self.plain(b"recorded\n")
        elif path == b"/huge-response-header":
            self.plain(b"ok\n", [("X-Huge", b"h" * 300000)])
        elif path == b"/many-headers":
            self.plain(b"ok\n", [("X-Line-%03d" % i, b"value-%03d" % i) for i in range(1, 301)])
        elif path == b"/cl-and-te":
            pieces = [CL_TE_BODY[i:i + 15000] for i in range(0, len(CL_TE_BODY), 15000)]
            chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
            self.send("200 OK", [("Content-Type", b"application/octet-stream"), ("Content-Length", b"7"),
                                 ("Transfer-Encoding", b"chunked")], chunked)
        elif path == b"/no-content":
            self.send("204 No Content", [("Content-Length", b"0" if b"zero" in target else b"7")])
        elif path == b"/not-modified":
            self.send("304 Not Modified", [("Content-Length", b"5000"), ("ETag", b'"v1"')])
        elif path == b"/gzip-te":
            self.send("200 OK", [("Content-Type", b"text/plain"), ("Transfer-Encoding", b"gzip")],
                      b"\x1f\x8b\x08\x00not-really-gzip" if method != b"HEAD" else b"")
            return False
        elif path == b"/tiny-chunks":
            query = dict(kv.partition(b"=")[::2] for kv in target.partition(b"?")[2].split(b"&") if kv)
            n = min(int(query.get(b"n", b"300000")), 1000000)
            self.send("200 OK", [("Content-Type", b"application/octet-stream"), ("Transfer-Encoding", b"chunked")])
            for start in range(0, n, 1000):
                self.request.sendall(b"1\r\nx\r\n" * min(1000, n - start))
            self.request.sendall(b"0\r\n\r\n")
        elif path == b"/paced-chunks":
            query = dict(kv.partition(b"=")[::2] for kv in target.partition(b"?")[2].split(b"&") if kv)
            n = min(int(query.get(b"n", b"100000")), 1000000)
            gap = int(query.get(b"us", b"20")) / 1e6
            self.send("200 OK", [("Content-Type", b"application/octet-stream"), ("Transfer-Encoding", b"chunked")])
            for _ in range(n):
                # Each write waits its gap after the last one, never catching up in a burst
                # after the thread had to wait for the GIL: bursts are what c may gather.
                due = time.monotonic() + gap
                while time.monotonic() < due:
                    pass
                self.request.sendall(b"1\r\nx\r\n")
            self.request.sendall(b"0\r\n\r\n")
        elif path == b"/never":
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                r, _, _ = select.select([self.request], [], [], 1.0)
                if r and not self.request.recv(65536):
                    return False
            return False
        elif path.startswith(b"/files/"):
            name = os.path.basename(path[len(b"/files/"):].decode())
            try:
                with open(os.path.join(DIR, name), "rb") as f:
                    data = f.read()
            except OSError:
                self.send("404 Not Found", [("Content-Length", b"10")], b"not found\n")
                return keep
            self.send("200 OK", [("Content-Type", b"application/octet-stream"),
                                 ("Content-Length", str(len(data)).encode())], data if method != b"HEAD" else b"")
        elif path == b"/":
            self.plain(b"evil ok\n")
        else:
            self.send("404 Not Found", [("Content-Length", b"10")], b"not found\n")
        return keep


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def main():
    global DIR
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--dir", required=True)
    a = ap.parse_args()
    DIR = a.dir
    os.makedirs(DIR, exist_ok=True)
    with open(os.path.join(DIR, "cl-te.bin"), "wb") as f:
        f.write(CL_TE_BODY)
    srv = Server(("127.0.0.1", 0), Handler)
    tmp = a.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % srv.server_address[1])
    os.replace(tmp, a.port_file)
    sys.stderr.write("evil upstream on 127.0.0.1:%d\n" % srv.server_address[1])
    srv.serve_forever()


if __name__ == "__main__":
    main()
