#!/usr/bin/env python3
"""Generate the revmux integration-test fixtures, deterministically.

Usage: gen_fixtures.py WORKDIR

Writes WORKDIR/fixtures/ (the directory the origin serves) and
WORKDIR/secret.txt (OUTSIDE the served root, for the traversal case).
All content comes from SHAKE-256 streams keyed by the file name, so every run
(and every machine) produces the same bytes. Files whose content is already
right are not rewritten, so their mtime (and so Last-Modified) stays stable.
"""
import hashlib
import os
import shutil
import struct
import sys
import zlib

MiB = 1024 * 1024
# The unique marker of the traversal case: it must never appear in a response.
SECRET_MARKER = "REVMUX-TRAVERSAL-MARKER-" + hashlib.sha256(b"revmux secret").hexdigest()[:24]


def stream(key: str, n: int) -> bytes:
    return hashlib.shake_256(("revmux-fixture:" + key).encode()).digest(n)


def png(width: int, height: int) -> bytes:
    """A real, decodable 8-bit RGB PNG: a gradient with deterministic noise."""
    noise = stream("png-noise", width * height)
    rows = []
    for y in range(height):
        row = bytearray(b"\x00")  # filter type 0
        for x in range(width):
            n = noise[y * width + x] & 0x1F
            row += bytes(((x * 255 // width) ^ n, (y * 255 // height) ^ n, ((x + y) & 0xFF) ^ n))
        rows.append(bytes(row))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"".join(rows), 9)) + chunk(b"IEND", b"")


def mp4(key: str, size: int) -> bytes:
    # An ISO-BMFF "ftyp" box followed by an "mdat" box of pseudo-random payload.
    ftyp = struct.pack(">I", 24) + b"ftypisom" + struct.pack(">I", 512) + b"isomiso2"
    body = stream(key, size - len(ftyp) - 8)
    return ftyp + struct.pack(">I", len(body) + 8) + b"mdat" + body


def ebml(key: str, doctype: bytes, size: int) -> bytes:
    # The EBML magic shared by Matroska and WebM, then pseudo-random payload.
    head = b"\x1a\x45\xdf\xa3\x9f\x42\x82" + bytes([0x80 | len(doctype)]) + doctype
    return head + stream(key, size - len(head))


def mp3(key: str, size: int) -> bytes:
    head = b"ID3\x04\x00\x00\x00\x00\x00\x00"
    return head + stream(key, size - len(head))


def vtt(key: str, cues: int) -> bytes:
    out = ["WEBVTT\n\n"]
    for i in range(cues):
        out.append("%02d:%02d.000 --> %02d:%02d.900\n%s cue %d %s\n\n" % (i // 60, i % 60, i // 60, i % 60, key, i, stream(key + str(i), 6).hex()))
    return "".join(out).encode()


def text(key: str, lines: int) -> bytes:
    out = []
    for i in range(lines):
        out.append("%s line %05d %s\n" % (key, i, stream(key + str(i), 12).hex()))
    return "".join(out).encode()


FILES = {
    # relative path -> bytes (built lazily)
    "poster.png": lambda: png(480, 360),
    "films/Le Voyage dans la Lune (1902).mp4": lambda: mp4("voyage", 3 * MiB + 123),
    "films/clip.mkv": lambda: ebml("clip", b"matroska", 2 * MiB + 4567),
    "trailer.webm": lambda: ebml("trailer", b"webm", 2 * MiB + 89),
    "música/canción.mp3": lambda: mp3("cancion", 300 * 1024 + 7),
    "big/archive.bin": lambda: stream("archive", 4 * MiB),
    "notes/readme.txt": lambda: text("readme", 200),
    'odd <name> & "quotes".txt': lambda: text("odd", 20),
    # characters that break a link unless percent-encoded: '%', '?', '#', '+', ';'
    "notes/100% sure? #1 + more; ok.txt": lambda: text("percent", 10),
    "empty.txt": lambda: b"",
    # case 66: natural order in listings (file-2 before file-10, Part 9 before Part 10)
    "natural/file-1.txt": lambda: text("natural-1", 1),
    "natural/file-2.txt": lambda: text("natural-2", 1),
    "natural/file-10.txt": lambda: text("natural-10", 1),
    "natural/Part 9/notes.txt": lambda: text("part-9", 1),
    "natural/Part 10/notes.txt": lambda: text("part-10", 1),
    # case 66: compressible text, streamed (over 64 KiB) and read whole
    "text/long.vtt": lambda: vtt("long", 2000),
    "text/short.vtt": lambda: vtt("short", 20),
}


def write_if_changed(path: str, data: bytes) -> None:
    try:
        with open(path, "rb") as f:
            if f.read() == data:
                return
    except FileNotFoundError:
        pass
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    work = os.path.abspath(sys.argv[1])
    root = os.path.join(work, "fixtures")
    os.makedirs(root, exist_ok=True)
    for stale in os.listdir(root):  # left by an interrupted case 29
        if stale.startswith("scratch-"):
            shutil.rmtree(os.path.join(root, stale), ignore_errors=True)
    for rel, make in FILES.items():
        write_if_changed(os.path.join(root, rel), make())
    write_if_changed(os.path.join(work, "secret.txt"), (SECRET_MARKER + "\n").encode())
    link = os.path.join(root, "symlink-to-secret")
    if not os.path.islink(link) or os.readlink(link) != "../secret.txt":
        if os.path.lexists(link):
            os.remove(link)
        os.symlink("../secret.txt", link)
    total = sum(os.path.getsize(os.path.join(root, rel)) for rel in FILES)
    print("fixtures: %d files, %.1f MiB in %s" % (len(FILES), total / MiB, root))
    return 0


if __name__ == "__main__":
    sys.exit(main())
