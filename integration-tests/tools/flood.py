#!/usr/bin/env python3
"""Raw TCP / TLS / HTTP/1.1 attacks for the abuse suite (asyncio; loopback only).

Every subcommand takes HOST PORT and --sources (comma-separated loopback source addresses,
used round robin; attackers use 127.0.0.2 and up) and prints one JSON object on stdout.

  hold HOST PORT --kind KIND --count N [--tls [--alpn h2]] [--ready FILE] [--hold S]
       [--until-closed] [--watch-pid PID --watch-max-mib M]
      Opens N connections of one KIND and holds them; records when the server closes each
      one (seconds since its TCP connect):
        nothing       connect (and with --tls: complete the handshake), send nothing
        half-preface  send "PRI * HTTP/2.0\\r\\n" (half the HTTP/2 preface), nothing more
        slow-head     send a request head one byte every --interval seconds, never ending it
        partial-head  send "GET / HTTP/1.1\\r\\nX: " and --head-bytes of "a", nothing more
        stalled-get   send "GET --path" and never read the response (tiny receive buffer)
      --ready FILE is written (JSON counts) once every connection attempt is done; the hold
      ends after --hold seconds, on SIGTERM, once all are closed (--until-closed), or when the
      watched PID's RSS passes --watch-max-mib. The output has "closed", "open", close times.

  abandon HOST PORT --total N --concurrency C --after S --path P
      N HTTP/1.1 GETs, C at a time, each connection closed S seconds after its request.

  request HOST PORT [--tls] [--method M] [--path P] [--path-fill CHAR:N] [--header 'K: V']...
          [--fill-header NAME:CHAR:N] [--repeat N] [--body TEXT]
      Raw HTTP/1.1 requests (one connection each, Connection: close) built byte by byte:
      a --fill-header value is N times CHAR, or with CHAR "high" the bytes 0x80..0xFF over
      and over. Reports the status of each (0: closed without an answer).

  tunnel-put HOST PORT --count N [--token T]
      N tunnel requests (TLS, PUT /revmux/tunnel with Upgrade: revmux/1) with a wrong token.
  tcp-close HOST PORT --count N
      N TCP connections closed at once without a byte.
"""
import argparse
import asyncio
import statistics
import time

import abuselib as al


def head_for(kind, a):
    if kind == "half-preface":
        return b"PRI * HTTP/2.0\r\n"
    if kind == "partial-head":
        return b"GET / HTTP/1.1\r\nX: " + b"a" * a.head_bytes
    if kind == "stalled-get":
        return ("GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n" % a.path).encode()
    return b""


class Conn:
    def __init__(self):
        self.t_connect = None
        self.t_closed = None
        self.first = b""
        self.error = None
        self.sent = False  # its opening bytes are written (in the kernel's send buffer)
        self.writer = None


async def one_hold(a, i, src, stop, conns, sem):
    c = Conn()
    conns.append(c)
    async with sem:
        try:
            sock = await al.aconnect(a.host, a.port, src, rcvbuf=4096 if a.kind == "stalled-get" else None)
        except OSError as e:
            c.error = "connect: %s" % e.__class__.__name__
            return
        c.t_connect = time.monotonic()
        try:
            if a.tls:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(
                    sock=sock, ssl=al.tls_context(a.alpn.split(",") if a.alpn else None),
                    server_hostname="localhost", limit=4096), 15)
            else:
                reader, writer = await asyncio.open_connection(sock=sock, limit=4096)
        except (OSError, asyncio.TimeoutError, EOFError) as e:
            # The server ended the connection during the TLS handshake: closed by it.
            c.error = "tls: %s" % e.__class__.__name__
            c.t_closed = time.monotonic()
            return
    c.writer = writer
    data = head_for(a.kind, a)

    async def write_slowly():
        # slow-head: a valid start of a request, then one byte per interval, forever.
        writer.write(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        while not stop.event.is_set():
            await asyncio.sleep(a.interval)
            writer.write(b"a")
            await writer.drain()

    writer_task = None
    try:
        if data:
            writer.write(data)
            await writer.drain()
        c.sent = True
        if a.kind == "slow-head":
            writer_task = asyncio.ensure_future(write_slowly())
        if a.kind == "stalled-get":
            await stop.event.wait()  # never read a byte
        else:
            while True:
                got = await reader.read(4096)
                if not got:
                    break
                if len(c.first) < 64:
                    c.first += got[:64 - len(c.first)]
            c.t_closed = time.monotonic()
    except (OSError, asyncio.IncompleteReadError) as e:
        c.error = e.__class__.__name__
        c.t_closed = time.monotonic()
    except asyncio.CancelledError:
        pass
    finally:
        if writer_task:
            writer_task.cancel()
        writer.transport.abort()


async def cmd_hold(a):
    stop = al.Stop(a.watch_pid, a.watch_max_mib)
    srcs = al.sources(a.sources)
    conns = []
    sem = asyncio.Semaphore(a.concurrency)
    tasks = [asyncio.ensure_future(one_hold(a, i, srcs[i % len(srcs)], stop, conns, sem)) for i in range(a.count)]

    def in_place(c):
        # Its opening bytes are written, or the server stopped taking them (the kernel's send
        # buffer is full), or it is over: closed, or it never connected.
        return (c.sent or c.t_closed or (c.error and not c.t_connect)
                or (c.writer is not None and c.writer.transport.get_write_buffer_size() > 0))

    async def all_in_place():
        while len(conns) < a.count or not all(in_place(c) for c in conns):
            await asyncio.sleep(0.05)

    try:
        await asyncio.wait_for(all_in_place(), a.hold)
    except asyncio.TimeoutError:
        pass
    counts = summary(a, conns)
    if a.ready:
        al.write_json(a.ready, counts)

    async def until_closed():
        while any(c.t_connect and not c.t_closed for c in conns):
            await asyncio.sleep(0.05)
        stop.stop("all closed")

    waiter = asyncio.ensure_future(until_closed()) if a.until_closed else None
    await stop.hold(a.hold)
    out = summary(a, conns)
    out["reason"] = stop.reason
    if a.watch_pid:
        out["watched_peak_mib"] = round(stop.peak_mib, 1)
    if waiter:
        waiter.cancel()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    al.emit(out)


def summary(a, conns):
    connected = [c for c in conns if c.t_connect]
    closed = [c.t_closed - c.t_connect for c in connected if c.t_closed]
    firsts = sorted({c.first[:40].decode("latin-1") for c in connected if c.first})
    errors = sorted({c.error for c in conns if c.error})
    return {
        "kind": a.kind, "tls": bool(a.tls), "attempted": a.count, "connected": len(connected),
        "connect_failed": sum(1 for c in conns if not c.t_connect and c.error),
        "closed": len(closed), "open": len(connected) - len(closed),
        "close_s_max": round(max(closed), 2) if closed else None,
        "close_s_min": round(min(closed), 2) if closed else None,
        "close_s_median": round(statistics.median(closed), 2) if closed else None,
        "answers": firsts[:3], "errors": errors[:5],
    }


async def cmd_abandon(a):
    srcs = al.sources(a.sources)
    sem = asyncio.Semaphore(a.concurrency)
    res = {"total": a.total, "done": 0, "connect_failed": 0, "answered": 0, "errors": 0}
    req = ("GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n" % a.path).encode()

    async def one(i):
        async with sem:
            try:
                sock = await al.aconnect(a.host, a.port, srcs[i % len(srcs)])
            except OSError:
                res["connect_failed"] += 1
                return
            try:
                reader, writer = await asyncio.open_connection(sock=sock, limit=65536)
                writer.write(req)
                await writer.drain()
                await asyncio.sleep(a.after)
                try:
                    got = await asyncio.wait_for(reader.read(64), 0.01)
                except asyncio.TimeoutError:
                    got = b""
                if got.startswith(b"HTTP/1.1 "):
                    res["answered"] += 1
                writer.transport.abort()  # close with unread data: the kernel sends RST
                res["done"] += 1
            except OSError:
                res["errors"] += 1

    start = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(a.total)))
    res["seconds"] = round(time.monotonic() - start, 2)
    al.emit(res)


def fill(spec):
    char, n = spec.rsplit(":", 1)
    n = int(n)
    if char == "high":
        return bytes(0x80 + (i % 0x80) for i in range(n))
    return char.encode("latin-1") * n


def build_request(a):
    path = a.path.encode("latin-1")
    if a.path_fill:
        path += fill(a.path_fill)
    lines = [b"%s %s HTTP/1.1" % (a.method.encode(), path)]
    if not any(h.lower().startswith("host:") for h in a.header):
        lines.append(b"Host: localhost")
    for h in a.header:
        lines.append(h.encode("latin-1"))
    for spec in a.fill_header:
        name, rest = spec.split(":", 1)
        lines.append(name.encode() + b": " + fill(rest))
    body = a.body.encode() if a.body is not None else b""
    if a.body is not None:
        lines.append(b"Content-Length: %d" % len(body))
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


async def one_request(a, src, req):
    """Send REQ and read the answer at the same time (a server may answer and close while a
    huge head is still being sent). Returns (status, seconds, first line)."""
    start = time.monotonic()
    try:
        sock = await al.aconnect(a.host, a.port, src)
        if a.tls:
            reader, writer = await asyncio.open_connection(
                sock=sock, ssl=al.tls_context(["http/1.1"]), server_hostname="localhost")
        else:
            reader, writer = await asyncio.open_connection(sock=sock)
    except OSError:
        return 0, time.monotonic() - start, "connect failed"

    async def send():
        try:
            writer.write(req)
            await writer.drain()
        except OSError:
            pass

    async def recv():
        got = b""
        try:
            while b"\r\n" not in got:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                got += chunk
        except OSError:
            pass
        return got

    sender = asyncio.ensure_future(send())
    try:
        got = await asyncio.wait_for(recv(), a.timeout)
    except asyncio.TimeoutError:
        got = b""
    sender.cancel()
    writer.transport.abort()
    line = got.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split()
    status = int(parts[1]) if len(parts) > 1 and line.startswith("HTTP/") and parts[1].isdigit() else 0
    return status, time.monotonic() - start, line or "no answer"


async def cmd_request(a):
    srcs = al.sources(a.sources)
    req = build_request(a)
    statuses = {}
    first = None
    slowest = 0.0
    for i in range(a.repeat):
        status, secs, line = await one_request(a, srcs[i % len(srcs)], req)
        statuses[str(status)] = statuses.get(str(status), 0) + 1
        first = first or line
        slowest = max(slowest, secs)
        if a.interval:
            await asyncio.sleep(a.interval)
    al.emit({"statuses": statuses, "first": first, "slowest_s": round(slowest, 3), "request_bytes": len(req)})


async def cmd_tunnel_put(a):
    srcs = al.sources(a.sources)
    sem = asyncio.Semaphore(a.concurrency)
    statuses = {}
    req = ("PUT /revmux/tunnel HTTP/1.1\r\nHost: localhost:%d\r\nConnection: upgrade\r\nUpgrade: revmux/1\r\n"
           "Authorization: Bearer %s\r\nrevmux-origin: attacker\r\nContent-Length: 0\r\n\r\n" % (a.port, a.token)).encode()

    async def one(i):
        async with sem:
            status = 0
            try:
                sock = await al.aconnect(a.host, a.port, srcs[i % len(srcs)])
                reader, writer = await asyncio.wait_for(asyncio.open_connection(
                    sock=sock, ssl=al.tls_context(["http/1.1"]), server_hostname="localhost"), 10)
                writer.write(req)
                await writer.drain()
                line = await asyncio.wait_for(reader.readline(), 10)
                parts = line.split()
                if len(parts) > 1 and parts[1].isdigit():
                    status = int(parts[1])
                writer.transport.abort()
            except (OSError, asyncio.TimeoutError, EOFError):
                pass
            statuses[str(status)] = statuses.get(str(status), 0) + 1

    await asyncio.gather(*(one(i) for i in range(a.count)))
    al.emit({"statuses": statuses})


async def cmd_tcp_close(a):
    srcs = al.sources(a.sources)
    done = failed = 0
    for i in range(a.count):
        try:
            sock = await al.aconnect(a.host, a.port, srcs[i % len(srcs)])
            sock.close()
            done += 1
        except OSError:
            failed += 1
    al.emit({"closed": done, "connect_failed": failed})


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    def common(p):
        p.add_argument("host")
        p.add_argument("port", type=int)
        p.add_argument("--sources", default="127.0.0.2")
        return p

    h = common(sub.add_parser("hold"))
    h.add_argument("--kind", required=True, choices=["nothing", "half-preface", "slow-head", "partial-head", "stalled-get"])
    h.add_argument("--count", type=int, default=1)
    h.add_argument("--concurrency", type=int, default=256, help="connection attempts at once")
    h.add_argument("--tls", action="store_true")
    h.add_argument("--alpn", default="")
    h.add_argument("--head-bytes", type=int, default=30000)
    h.add_argument("--path", default="/")
    h.add_argument("--interval", type=float, default=1.0)
    h.add_argument("--ready")
    h.add_argument("--hold", type=float, default=30.0)
    h.add_argument("--until-closed", action="store_true")
    h.add_argument("--watch-pid", type=int, default=0)
    h.add_argument("--watch-max-mib", type=float, default=0.0)

    b = common(sub.add_parser("abandon"))
    b.add_argument("--total", type=int, default=1500)
    b.add_argument("--concurrency", type=int, default=100)
    b.add_argument("--after", type=float, default=0.05)
    b.add_argument("--path", default="/")

    r = common(sub.add_parser("request"))
    r.add_argument("--tls", action="store_true")
    r.add_argument("--method", default="GET")
    r.add_argument("--path", default="/")
    r.add_argument("--path-fill")
    r.add_argument("--header", action="append", default=[])
    r.add_argument("--fill-header", action="append", default=[])
    r.add_argument("--body")
    r.add_argument("--repeat", type=int, default=1)
    r.add_argument("--interval", type=float, default=0.0)
    r.add_argument("--timeout", type=float, default=10.0)

    t = common(sub.add_parser("tunnel-put"))
    t.add_argument("--count", type=int, default=1)
    t.add_argument("--concurrency", type=int, default=4)
    t.add_argument("--token", default="wrong")

    c = common(sub.add_parser("tcp-close"))
    c.add_argument("--count", type=int, default=1)

    a = ap.parse_args()
    al.check_loopback(a.host)
    al.raise_nofile()
    run = {"hold": cmd_hold, "abandon": cmd_abandon, "request": cmd_request,
           "tunnel-put": cmd_tunnel_put, "tcp-close": cmd_tcp_close}[a.cmd]
    asyncio.run(run(a))


if __name__ == "__main__":
    main()
