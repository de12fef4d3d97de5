"""A WSGI app with no framework and no dependencies:

    rgunicorn --chdir examples/python/plain hello:application
"""


def application(environ, start_response):
    name = environ["PATH_INFO"].strip("/") or "world"
    body = ("Hello, %s!\n" % name).encode("utf-8")
    start_response(
        "200 OK",
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
    )
    return [body]
