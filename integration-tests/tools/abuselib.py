"""Shared pieces of the abuse tools (flood.py, h2abuse.py, evil_upstream.py).

- Every socket goes to a loopback address only (127.0.0.0/8, ::1), bound to the source
  address the case chooses (attackers use 127.0.0.2, 127.0.0.3, ...; the victim 127.0.0.1),
  so the proxy's per-client-address limits see attacker and victim as different clients.
- TLS without certificate verification (the attacks are not about trust).
- Results are one JSON object on stdout; "ready" files are written atomically so a case can
  poll for them.
- H2: a small raw HTTP/2 client on top of hyperframe and hpack (they come with Debian's
  python3-h2). It sends exactly the frames it is told to, in one write when asked, which is
  what protocol-violation tests need; it answers SETTINGS and PING by itself.
"""
import asyncio
import ipaddress
import json
import os
import resource
import signal
import socket
import ssl
import sys
import time

IP_BIND_ADDRESS_NO_PORT = 24  # linux/in.h: pick the source port at connect(), not at bind()
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def raise_nofile():
    """Lift the open-file soft limit to the hard limit (floods hold a thousand sockets)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def check_loopback(host):
    """Refuse anything but loopback: these tools must never send traffic elsewhere."""
    addr = "127.0.0.1" if host == "localhost" else host
    if not ipaddress.ip_address(addr).is_loopback:
        sys.exit("refusing non-loopback address %r" % host)
    return addr


def new_socket(host, source=None, rcvbuf=None, blocking=True):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(fam, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    if source:
        check_loopback(source)
        try:
            sock.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        except OSError:
            pass
        sock.bind((source, 0))
    sock.setblocking(blocking)
    return sock


def connect(host, port, source=None, timeout=10.0, rcvbuf=None):
    """A blocking TCP connection from SOURCE to a loopback HOST:PORT."""
    host = check_loopback(host)
    sock = new_socket(host, source, rcvbuf)
    sock.settimeout(timeout)
    try:
        sock.connect((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


async def aconnect(host, port, source=None, rcvbuf=None):
    """The same for asyncio: a connected non-blocking socket."""
    host = check_loopback(host)
    sock = new_socket(host, source, rcvbuf, blocking=False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def tls_context(alpn=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def wrap_tls(sock, alpn=None, server_name="localhost"):
    """Blocking TLS handshake on a connected socket; returns the TLS socket."""
    return tls_context(alpn).wrap_socket(sock, server_hostname=server_name)


def sources(spec):
    """'127.0.0.2,127.0.0.3' -> list; the attackers' source addresses, used round robin."""
    out = [s.strip() for s in spec.split(",") if s.strip()]
    for s in out:
        check_loopback(s)
    return out or [None]


def write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f)
        f.write("\n")
    os.replace(tmp, path)


def emit(obj):
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    sys.stdout.flush()


def rss_mib(pid):
    """VmRSS of PID in MiB (None if it is gone)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


class Stop:
    """Ends a hold early: SIGTERM/SIGINT, or a watched process over its memory cap (the
    attacks that grow memory stop themselves rather than push a shared machine into swap)."""

    def __init__(self, watch_pid=0, watch_max_mib=0.0):
        self.event = asyncio.Event()
        self.reason = None
        self.watch_pid = watch_pid
        self.watch_max_mib = watch_max_mib
        self.peak_mib = 0.0
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop, "signal")
        if watch_pid:
            asyncio.ensure_future(self._watch())

    def stop(self, reason):
        if not self.event.is_set():
            self.reason = reason
            self.event.set()

    async def _watch(self):
        while not self.event.is_set():
            rss = rss_mib(self.watch_pid)
            if rss is not None:
                self.peak_mib = max(self.peak_mib, rss)
                if self.watch_max_mib and rss > self.watch_max_mib:
                    self.stop("watched pid %d over %.0f MiB (%.0f MiB)" % (self.watch_pid, self.watch_max_mib, rss))
            await asyncio.sleep(0.1)

    async def hold(self, seconds):
        """Wait until stopped or SECONDS passed."""
        try:
            await asyncio.wait_for(self.event.wait(), seconds)
        except asyncio.TimeoutError:
            self.stop("hold time over")


# ---------------------------------------------------------------- raw HTTP/2

class Closed(Exception):
    pass


class H2:
    """A raw HTTP/2 client connection over a blocking socket (plain or TLS).

    Frames are built with hyperframe, header blocks with hpack. read() returns the next
    frame the server sent, after answering SETTINGS (ACK) and PING (ACK) itself; it raises
    Closed on EOF or a reset, socket.timeout when nothing came in time.
    """

    def __init__(self, sock, max_frame=16384):
        import hpack
        import hyperframe.frame  # noqa: F401 (checked here so a missing package fails early)

        self.sock = sock
        self.enc = hpack.Encoder()
        self.dec = hpack.Decoder()
        self.dec.max_header_list_size = 1 << 24
        self.max_frame = max_frame
        self.buf = b""
        self.next_id = 1
        self.peer_settings = None  # the server's first SETTINGS, once read

    # -- sending
    def start(self, settings=None):
        from hyperframe.frame import SettingsFrame

        self.sock.sendall(PREFACE + SettingsFrame(0, settings=settings or {}).serialize())

    def new_stream(self):
        sid = self.next_id
        self.next_id += 2
        return sid

    def headers_frames(self, sid, headers, end_stream=False, huffman=True):
        """The HEADERS (+ CONTINUATION) frames carrying HEADERS, as bytes."""
        from hyperframe.frame import ContinuationFrame, HeadersFrame

        # Like real encoders, long values go without Huffman coding, which would make '~' or
        # bytes 0x80-0xFF two to four times longer (and the block that many frames longer).
        block = b"".join(self.enc.encode([h], huffman=huffman and len(h[1]) < 1024) for h in headers)
        chunks = [block[i:i + self.max_frame] for i in range(0, len(block), self.max_frame)] or [b""]
        out = []
        for i, chunk in enumerate(chunks):
            f = HeadersFrame(sid, chunk) if i == 0 else ContinuationFrame(sid, chunk)
            if i == 0 and end_stream:
                f.flags.add("END_STREAM")
            if i == len(chunks) - 1:
                f.flags.add("END_HEADERS")
            out.append(f.serialize())
        return b"".join(out)

    def data_frame(self, sid, data, end_stream=False):
        from hyperframe.frame import DataFrame

        f = DataFrame(sid, data)
        if end_stream:
            f.flags.add("END_STREAM")
        return f.serialize()

    def rst_frame(self, sid, code):
        from hyperframe.frame import RstStreamFrame

        return RstStreamFrame(sid, error_code=code).serialize()

    def send(self, *parts):
        self.sock.sendall(b"".join(parts))

    # -- receiving
    def _fill(self, n):
        while len(self.buf) < n:
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError, ssl.SSLError) as e:
                raise Closed(str(e))
            if not chunk:
                raise Closed("EOF")
            self.buf += chunk

    def read(self):
        from hyperframe.frame import Frame, PingFrame, SettingsFrame

        while True:
            self._fill(9)
            frame, length = Frame.parse_frame_header(memoryview(self.buf[:9]))
            self._fill(9 + length)
            frame.parse_body(memoryview(self.buf[9:9 + length]))
            self.buf = self.buf[9 + length:]
            if isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
                if self.peer_settings is None:
                    self.peer_settings = dict(frame.settings)
                ack = SettingsFrame(0)
                ack.flags.add("ACK")
                self.sock.sendall(ack.serialize())
                continue
            if isinstance(frame, PingFrame) and "ACK" not in frame.flags:
                ack = PingFrame(0, frame.opaque_data)
                ack.flags.add("ACK")
                self.sock.sendall(ack.serialize())
                continue
            return frame

    def decode(self, block):
        return [(k.decode("latin-1") if isinstance(k, bytes) else k, v.decode("latin-1") if isinstance(v, bytes) else v)
                for k, v in self.dec.decode(block, raw=True)]


ERROR_NAMES = {
    0x0: "NO_ERROR", 0x1: "PROTOCOL_ERROR", 0x2: "INTERNAL_ERROR", 0x3: "FLOW_CONTROL_ERROR",
    0x4: "SETTINGS_TIMEOUT", 0x5: "STREAM_CLOSED", 0x6: "FRAME_SIZE_ERROR", 0x7: "REFUSED_STREAM",
    0x8: "CANCEL", 0x9: "COMPRESSION_ERROR", 0xA: "CONNECT_ERROR", 0xB: "ENHANCE_YOUR_CALM",
    0xC: "INADEQUATE_SECURITY", 0xD: "HTTP_1_1_REQUIRED",
}


def error_name(code):
    return ERROR_NAMES.get(code, "0x%x" % code)


def stream_outcome(h2, sid, deadline, want_body=False):
    """Read frames until stream SID is answered or fails, or the connection ends.

    Returns a dict: {"outcome": "response"|"rst"|"goaway"|"closed"|"timeout", "status": ...,
    "code": error name, "body_len": n, "complete": bool}. A response counts once its
    headers arrived (and, with WANT_BODY, once the stream ended)."""
    from hyperframe.frame import ContinuationFrame, DataFrame, GoAwayFrame, HeadersFrame, RstStreamFrame

    res = {"outcome": "timeout", "status": None, "code": None, "body_len": 0, "complete": False}
    block = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return res
        h2.sock.settimeout(left)
        try:
            f = h2.read()
        except socket.timeout:
            return res
        except Closed:
            if res["status"] is None:
                res["outcome"] = "closed"
            return res
        if isinstance(f, GoAwayFrame):
            res.update(outcome="goaway", code=error_name(f.error_code))
            return res
        if f.stream_id != sid:
            continue
        if isinstance(f, RstStreamFrame):
            res.update(outcome="rst", code=error_name(f.error_code))
            return res
        if isinstance(f, (HeadersFrame, ContinuationFrame)):
            block += f.data
            if "END_HEADERS" in f.flags:
                hdrs = h2.decode(block)
                block = b""
                st = dict(hdrs).get(":status")
                if st and res["status"] is None:
                    res["status"] = int(st)
                    res["outcome"] = "response"
                if "END_STREAM" in f.flags:
                    res["complete"] = True
                    return res
                if not want_body and res["status"] is not None and res["status"] >= 200:
                    return res
        elif isinstance(f, DataFrame):
            res["body_len"] += len(f.data)
            if "END_STREAM" in f.flags:
                res["complete"] = True
                return res
