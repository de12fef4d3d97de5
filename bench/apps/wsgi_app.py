"""The welcome API as a plain WSGI callable (no framework).

GET /api/v1/welcome/get_welcome_data answers exactly the reference deployment's bytes.
Served by gunicorn (sync, gthread) and granian in the benchmark.
"""

WELCOME_PATH = "/api/v1/welcome/get_welcome_data"
BODY = b'{"code": "SUCCESS", "data": {"title": "Welcome to HUO Ke Website"}}'
NOT_FOUND = b'{"code": "NOT_FOUND", "message": "The requested URL was not found on the server."}'
JSON = "application/json; charset=utf-8"
_OK_HEADERS = [("Content-Type", JSON), ("Content-Length", str(len(BODY)))]
_NF_HEADERS = [("Content-Type", JSON), ("Content-Length", str(len(NOT_FOUND)))]


def application(environ, start_response):
    if environ.get("PATH_INFO") == WELCOME_PATH and environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
        start_response("200 OK", list(_OK_HEADERS))
        return [BODY]
    start_response("404 NOT FOUND", list(_NF_HEADERS))
    return [NOT_FOUND]
