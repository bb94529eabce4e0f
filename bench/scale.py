#!/usr/bin/env python3
"""revmux benchmark, scale phase: many streams on one tunnel.

    scale.py hold PORT
        A local HTTP/1.1 service that holds every request (an idle long-poll) until it is
        released: `GET /held` (sent to it directly) answers how many it holds, `GET /release`
        answers every held request with 200 and `released`. Runs until killed.

    scale.py idle URL N [--deadline S]
        N front-end clients, each with one long-poll (`GET URL`) in flight, spread over source
        addresses 127.1.x.y (32 per address: the proxy's per-address stream share). Prints
        `open N` once every request is sent, then waits for the answers (the caller releases
        them) and prints one JSON line: {"ok": …, "failed": …, "errors": […]}.

    scale.py idle-h2 URL N [--deadline S]
        The same N long-polls as HTTP/2 streams (h2c with prior knowledge, python3-h2): 32
        streams on one connection per source address, as a browser multiplexes its requests.

    scale.py download URL N SIZE SHA256 [--deadline S]
        N downloads of URL at once from as many source addresses as needed (32 per address),
        each checked against SIZE and SHA256; one JSON line: ok, failed, seconds, MiB/s, the
        first errors.

Only loopback addresses are used. Every wait has a deadline.
"""

import asyncio
import hashlib
import json
import resource
import sys
import time
from urllib.parse import urlsplit

PER_ADDRESS = 32


def raise_nofile(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, n)) if hard != resource.RLIM_INFINITY else max(soft, n)
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def source(i):
    """The i-th client's source address: 32 clients per address, 127.1.0.1 upwards."""
    a = i // PER_ADDRESS + 1
    return f"127.1.{a // 250}.{a % 250 + 1}"


async def read_head(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return status, headers


async def get(url, i, on_sent=None, sink=None):
    """One GET over a fresh connection from client i's address; (status, body length, sha256)."""
    u = urlsplit(url)
    reader, writer = await asyncio.open_connection(u.hostname, u.port, local_addr=(source(i), 0), limit=1 << 20)
    try:
        path = u.path + (f"?{u.query}" if u.query else "")
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {u.netloc}\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        if on_sent:
            on_sent()
        status, headers = await read_head(reader)
        digest, size = hashlib.sha256(), 0
        want = int(headers.get("content-length", "-1"))
        while want < 0 or size < want:
            chunk = await reader.read(256 * 1024)
            if not chunk:
                break
            size += len(chunk)
            digest.update(chunk)
        return status, size, digest.hexdigest()
    finally:
        writer.close()


async def idle(url, n, deadline):
    raise_nofile(n + 256)
    sent = 0
    all_sent = asyncio.Event()

    def on_sent():
        nonlocal sent
        sent += 1
        if sent == n:
            all_sent.set()

    results, errors = [], []

    async def one(i):
        try:
            results.append(await get(url, i, on_sent))
        except Exception as e:  # a failed client is counted, never fatal
            errors.append(f"client {i}: {type(e).__name__}: {e}")
            on_sent()

    tasks = []
    for i in range(n):
        tasks.append(asyncio.create_task(one(i)))
        if i % 200 == 199:
            await asyncio.sleep(0)  # let connects progress: no burst of n SYNs at once
    await asyncio.wait_for(all_sent.wait(), deadline)
    print(f"open {n}", flush=True)
    await asyncio.wait_for(asyncio.gather(*tasks), deadline)
    ok = sum(1 for s, _, _ in results if s == 200)
    bad = [f"status {s}" for s, _, _ in results if s != 200]
    print(json.dumps({"ok": ok, "failed": n - ok, "errors": (errors + bad)[:5]}), flush=True)


async def h2_streams(url, i, count, on_open):
    """One h2c connection from address i; `count` GETs on it; the statuses."""
    import h2.config
    import h2.connection
    import h2.events

    u = urlsplit(url)
    reader, writer = await asyncio.open_connection(u.hostname, u.port, local_addr=(source(i * PER_ADDRESS), 0))
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    path = u.path + (f"?{u.query}" if u.query else "")
    for _ in range(count):
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, [(":method", "GET"), (":scheme", "http"), (":authority", u.netloc), (":path", path)],
                          end_stream=True)
    writer.write(conn.data_to_send())
    await writer.drain()
    on_open(count)
    statuses, done = {}, 0
    try:
        while done < count:
            data = await reader.read(65536)
            if not data:
                raise ConnectionError(f"connection closed with {count - done} streams open")
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived):
                    statuses[ev.stream_id] = int(dict(ev.headers)[":status"])
                elif isinstance(ev, h2.events.DataReceived):
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset)):
                    done += 1
            writer.write(conn.data_to_send())
        return [statuses.get(sid, 0) for sid in range(1, 2 * count, 2)]
    finally:
        writer.close()


async def idle_h2(url, n, deadline):
    raise_nofile(n // PER_ADDRESS + 256)
    opened = 0
    all_open = asyncio.Event()

    def on_open(k):
        nonlocal opened
        opened += k
        if opened >= n:
            all_open.set()

    statuses, errors = [], []

    async def one(i, count):
        try:
            statuses.extend(await h2_streams(url, i, count, on_open))
        except Exception as e:
            errors.append(f"connection {i}: {type(e).__name__}: {e}")
            on_open(count)

    conns = (n + PER_ADDRESS - 1) // PER_ADDRESS
    tasks = [asyncio.create_task(one(i, min(PER_ADDRESS, n - i * PER_ADDRESS))) for i in range(conns)]
    await asyncio.wait_for(all_open.wait(), deadline)
    print(f"open {n}", flush=True)
    await asyncio.wait_for(asyncio.gather(*tasks), deadline)
    ok = sum(1 for s in statuses if s == 200)
    bad = [f"status {s}" for s in statuses if s != 200]
    print(json.dumps({"ok": ok, "failed": n - ok, "errors": (errors + bad)[:5]}), flush=True)


async def download(url, n, size, sha, deadline):
    raise_nofile(n + 256)
    errors = []
    ok = 0

    async def one(i):
        nonlocal ok
        try:
            status, got, digest = await get(url, i)
            if status == 200 and got == size and digest == sha:
                ok += 1
            else:
                errors.append(f"client {i}: status {status}, {got} bytes, sha256 {'ok' if digest == sha else 'wrong'}")
        except Exception as e:
            errors.append(f"client {i}: {type(e).__name__}: {e}")

    t0 = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(n))), deadline)
    secs = time.monotonic() - t0
    print(json.dumps({"ok": ok, "failed": n - ok, "seconds": round(secs, 2),
                      "mib_s": round(ok * size / 1048576 / secs, 1), "errors": errors[:5]}), flush=True)


async def hold(port):
    held = []

    async def serve(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ", 2)[1]
                if path == b"/held":
                    body = f"{len(held)}\n".encode()
                elif path == b"/release":
                    for w in held:
                        w.set_result(None)
                    body = f"released {len(held)}\n".encode()
                    held.clear()
                else:
                    f = asyncio.get_running_loop().create_future()
                    held.append(f)
                    await f
                    body = b"released\n"
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Type: text/plain\r\n\r\n%s"
                             % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    raise_nofile(65536)
    server = await asyncio.start_server(serve, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


def main(argv):
    deadline = 300.0
    if "--deadline" in argv:
        i = argv.index("--deadline")
        deadline = float(argv[i + 1])
        del argv[i:i + 2]
    if len(argv) == 3 and argv[1] == "hold":
        asyncio.run(hold(int(argv[2])))
    elif len(argv) == 4 and argv[1] == "idle":
        asyncio.run(idle(argv[2], int(argv[3]), deadline))
    elif len(argv) == 4 and argv[1] == "idle-h2":
        asyncio.run(idle_h2(argv[2], int(argv[3]), deadline))
    elif len(argv) == 6 and argv[1] == "download":
        asyncio.run(download(argv[2], int(argv[3]), int(argv[4]), argv[5], deadline))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
