"""The reference deployment's backend, in miniature: a Flask app with flask-cors, a
Flask-RESTful blueprint and a Flask-SQLAlchemy database set up at import, reading its
data by paths relative to the project folder, which it is started from:

    cd examples/python/welcome && rgunicorn -w 4 app.app:app

Its welcome URL answers exactly what rgunicorn's built-in `welcome` app answers, byte for
byte; /api/v1/welcome/get_greetings reads the database (app/db.py).
"""

import json

from flask import Flask, Response
from flask_cors import CORS
from werkzeug.exceptions import MethodNotAllowed, NotFound

from app.db import init_db
from app.welcome import JSON, welcome


def create_app():
    app = Flask(__name__)
    init_db(app)
    # CORS headers only for requests that carry an Origin, as a browser's do.
    CORS(app, always_send=False)
    app.register_blueprint(welcome, url_prefix="/api/v1/welcome")

    @app.errorhandler(NotFound)
    def not_found(_error):
        body = {"code": "NOT_FOUND", "message": "The requested URL was not found on the server."}
        return Response(json.dumps(body), 404, content_type=JSON)

    @app.errorhandler(MethodNotAllowed)
    def not_allowed(error):
        body = {
            "code": "METHOD_NOT_ALLOWED",
            "message": "The method is not allowed for the requested URL.",
        }
        response = Response(json.dumps(body), 405, content_type=JSON)
        response.headers["Allow"] = ", ".join(sorted(error.valid_methods or []))
        return response

    return app


app = create_app()
