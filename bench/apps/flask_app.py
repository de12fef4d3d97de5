"""The welcome API as the reference deployment wrote it: a Flask app.

The body is serialised per request with json.dumps (default separators), which gives exactly
the reference bytes: {"code": "SUCCESS", "data": {"title": "Welcome to HUO Ke Website"}}.
(Flask's jsonify would answer the compact form without spaces, i.e. different bytes.)
"""

import json
import time

from flask import Flask, Response, request

app = Flask(__name__)
application = app


@app.get("/api/v1/welcome/get_welcome_data")
def get_welcome_data():
    body = json.dumps({"code": "SUCCESS", "data": {"title": "Welcome to HUO Ke Website"}})
    return Response(body, status=200, content_type="application/json; charset=utf-8")


@app.get("/api/v1/slow")
def slow():
    """A slow route (a long database call, say): the bench's slow-request rounds ask for it
    while wrk asks for the welcome route, to see whether the slow one holds others up."""
    time.sleep(int(request.args.get("ms", "1000")) / 1000)
    return Response("slow\n", status=200, content_type="text/plain")
