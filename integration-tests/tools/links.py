#!/usr/bin/env python3
"""Read an HTML page on stdin; print every <a href> as one line:
HREF<TAB>UNQUOTED-HREF<TAB>TEXT<TAB>ENC|RAW
ENC: the href holds only URI characters (so non-ASCII, spaces, quotes, <> are percent-encoded).
"""
import re
import sys
from html.parser import HTMLParser
from urllib.parse import unquote

URI_CHARS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*")


class Links(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.href = None
        self.text = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.href = dict(attrs).get("href")
            self.text = []

    def handle_data(self, data):
        if self.href is not None:
            self.text.append(data)

    def handle_endtag(self, tag):
        if tag == "a" and self.href is not None:
            text = "".join(self.text).strip().replace("\t", " ").replace("\n", " ")
            enc = "ENC" if URI_CHARS.fullmatch(self.href) else "RAW"
            print("%s\t%s\t%s\t%s" % (self.href, unquote(self.href), text, enc))
            self.href = None


p = Links()
p.feed(sys.stdin.buffer.read().decode("utf-8", "replace"))
p.close()
