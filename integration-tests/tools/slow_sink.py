#!/usr/bin/env python3
"""A slow reader: copy stdin to OUT at no more than RATE bytes per second.

Usage: slow_sink.py OUT RATE

Put behind `curl -o FIFO`, it makes curl block on its output, so curl stops reading
its socket and the server side sees real back-pressure — unlike `curl --limit-rate`
alone, which on a fast loopback can read megabytes in a single burst. Reads 16 KiB at
a time and writes each piece to OUT at once (so OUT's size shows the progress).
"""
import os
import sys
import time

out_path, rate = sys.argv[1], float(sys.argv[2])
start = time.monotonic()
done = 0
with open(out_path, "wb", buffering=0) as out:
    while True:
        ahead = done / rate - (time.monotonic() - start)
        if ahead > 0:
            time.sleep(ahead)
        chunk = os.read(0, 16384)
        if not chunk:
            break
        out.write(chunk)
        done += len(chunk)
