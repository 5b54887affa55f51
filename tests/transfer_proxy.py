"""An HTTP proxy in front of a registry (127.0.0.1 only) that holds each blob transfer a while,
counts how many run at once, and can answer a blob's first downloads with a 500: what a pull's
and a push's concurrency and retries look like from the registry's side."""

import http.client
import http.server
import re
import threading
import time

_BLOB = re.compile(r"^/v2/.+/blobs/(sha256:[0-9a-f]{64})$")
_UPLOAD = re.compile(r"^/v2/.+/blobs/uploads/")


class TransferProxy:
    def __init__(self, upstream, hold=0.4):
        self.upstream = upstream  # "127.0.0.1:PORT"
        self.hold = hold  # seconds each blob download and each upload request is held
        self.lock = threading.Lock()
        self.now = {"download": 0, "upload": 0}
        self.most = {"download": 0, "upload": 0}
        self.total = {"download": 0, "upload": 0}
        self.fail = {}  # digest -> how many of its next downloads answer 500
        self.downloads = {}  # digest -> its GETs (failed ones too)
        self.ignore = set()  # digests whose downloads are not counted among those at once
        self.on_download = None  # called with the digest of each blob GET
        self.fail_uploads_until = 0.0  # until then (time.monotonic()), uploads answer 500
        self.failed_uploads = 0
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _any(self):
                proxy._handle(self)
            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _any

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.addr = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def reset(self):
        with self.lock:
            self.most = {"download": 0, "upload": 0}
            self.total = {"download": 0, "upload": 0}
            self.downloads = {}
            self.ignore = set()

    def stop_failing(self, digest):
        with self.lock:
            self.fail.pop(digest, None)

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def _handle(self, h):
        path = h.path.split("?", 1)[0]
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else None
        if h.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = _read_chunked(h.rfile)
        m = _BLOB.match(path)
        if m and h.command == "GET" and self.on_download is not None:
            self.on_download(m.group(1))
        kind = ("download" if m and h.command == "GET" and m.group(1) not in self.ignore else
                "upload" if _UPLOAD.match(path) and h.command in ("PATCH", "PUT") and body else None)
        if kind:
            with self.lock:
                self.now[kind] += 1
                self.total[kind] += 1
                self.most[kind] = max(self.most[kind], self.now[kind])
                failing = False
                if kind == "upload" and time.monotonic() < self.fail_uploads_until:
                    failing = True
                    self.failed_uploads += 1
                if kind == "download":
                    d = m.group(1)
                    self.downloads[d] = self.downloads.get(d, 0) + 1
                    if self.fail.get(d, 0) > 0:
                        self.fail[d] -= 1
                        failing = True
            try:
                time.sleep(self.hold)
                if failing:
                    answer = (500, [("Content-Type", "application/json")],
                              b'{"errors":[{"code":"UNKNOWN","message":"unknown error"}]}')
                else:
                    answer = self._fetch(h, body)
            finally:
                # no longer in flight before the client has its answer: a client that has it may
                # start its next transfer at once
                with self.lock:
                    self.now[kind] -= 1
            self._reply(h, *answer)
            return
        self._reply(h, *self._fetch(h, body))

    def _fetch(self, h, body):
        """The registry's answer to the request: (status, headers, body)."""
        c = http.client.HTTPConnection(self.upstream, timeout=60)
        try:
            c.putrequest(h.command, h.path, skip_host=True, skip_accept_encoding=True)
            for k, v in h.headers.items():  # (several Accept headers, each passed on)
                if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                    c.putheader(k, v)
            c.putheader("Content-Length", str(len(body or b"")))
            c.endheaders(body)
            r = c.getresponse()
            data = r.read()
            headers = [(k, v) for k, v in r.getheaders() if k.lower() not in ("transfer-encoding", "connection") and (
                k.lower() != "content-length" or h.command == "HEAD")]
            return r.status, headers, data
        finally:
            c.close()

    @staticmethod
    def _reply(h, status, headers, data):
        h.send_response(status)
        for k, v in headers:
            h.send_header(k, v)
        if h.command != "HEAD":
            h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(data)


def _read_chunked(f):
    out = bytearray()
    while True:
        size = int(f.readline().split(b";")[0].strip() or b"0", 16)
        if size == 0:
            while f.readline() not in (b"\r\n", b"\n", b""):
                pass
            return bytes(out)
        out += f.read(size)
        f.readline()
