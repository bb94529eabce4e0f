#!/usr/bin/env python3
"""A proxy that stops talking after the upgrade: accepts an origin's TLS connection and its
tunnel request, answers `101 Switching Protocols` as p would, and then never sends a byte of
HTTP/2 (what a stuck proxy or a middlebox swallowing the stream looks like to the origin).

Usage: silent_proxy.py --certs-dir DIR --port-file FILE --count-file FILE

DIR holds the proxy's server.pem and server-key.pem (as p writes them). The port goes to
--port-file once listening; each upgraded connection appends a line to --count-file. Keeps
every connection open, reading and discarding, until the peer closes it; runs until killed.
"""
import argparse
import os
import socket
import ssl
import threading

ap = argparse.ArgumentParser()
ap.add_argument("--certs-dir", required=True)
ap.add_argument("--port-file", required=True)
ap.add_argument("--count-file", required=True)
a = ap.parse_args()

ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(os.path.join(a.certs_dir, "server.pem"), os.path.join(a.certs_dir, "server-key.pem"))
ctx.set_alpn_protocols(["http/1.1"])


def serve(raw):
    try:
        with ctx.wrap_socket(raw, server_side=True) as tls:
            tls.settimeout(120)
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 65536:
                piece = tls.recv(4096)
                if not piece:
                    return
                head += piece
            tls.sendall(b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: revmux/1\r\n\r\n")
            with open(a.count_file, "a") as f:
                f.write("upgraded\n")
            while tls.recv(65536):
                pass
    except (OSError, ssl.SSLError):
        pass


srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0))
srv.listen(16)
with open(a.port_file + ".tmp", "w") as f:
    f.write(str(srv.getsockname()[1]))
os.rename(a.port_file + ".tmp", a.port_file)
while True:
    conn, _ = srv.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
