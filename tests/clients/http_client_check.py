"""A real Python client against rgunicorn's echo app: keep-alive reuse, a chunked
upload, a HEAD and a plain GET, through http.client. Exits non-zero on any mismatch."""

import http.client
import json
import sys

host, port = sys.argv[1], int(sys.argv[2])
conn = http.client.HTTPConnection(host, port, timeout=10)

conn.request("GET", "/a/b?x=1", headers={"X-Test": "yes"})
resp = conn.getresponse()
body = json.loads(resp.read())
assert resp.status == 200, resp.status
assert body["path"] == "/a/b" and body["query"] == "x=1", body
assert ["X-Test", "yes"] in body["headers"], body["headers"]
first_sock = conn.sock

def chunks():
    yield b"hello "
    yield b"world"

conn.request("POST", "/upload", body=chunks(), encode_chunked=True,
             headers={"Transfer-Encoding": "chunked"})
resp = conn.getresponse()
body = json.loads(resp.read())
assert body["body"] == "hello world", body
assert conn.sock is first_sock, "keep-alive connection was not reused"

conn.request("HEAD", "/h")
resp = conn.getresponse()
assert resp.status == 200 and resp.read() == b""
assert int(resp.getheader("Content-Length")) > 0
print("ok")
