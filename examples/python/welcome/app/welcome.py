"""The welcome API as a blueprint: GET /api/v1/welcome/get_welcome_data, and
GET /api/v1/welcome/get_greetings from the database."""

import json

import flask_restful
from flask import Blueprint, Response

from app.db import Greeting, db

JSON = "application/json; charset=utf-8"

# Read at import, relative to the working directory, as the reference backend did.
with open("data/welcome.json", encoding="utf-8") as f:
    WELCOME = json.load(f)


class Api(flask_restful.Api):
    """Errors go to the app's own JSON handlers (see app.py), not Flask-RESTful's."""

    def handle_error(self, e):
        raise e


welcome = Blueprint("welcome", __name__)
api = Api(welcome)


class WelcomeData(flask_restful.Resource):
    def get(self):
        # json.dumps' default separators give the reference's bytes (jsonify is compact).
        body = json.dumps({"code": "SUCCESS", "data": WELCOME})
        return Response(body, 200, content_type=JSON)

    def options(self):
        # Flask's automatic OPTIONS answer carries a text/html Content-Type; the
        # reference's had only Allow.
        response = Response(status=200, headers={"Allow": "GET, HEAD, OPTIONS"})
        del response.headers["Content-Type"]
        return response


class Greetings(flask_restful.Resource):
    def get(self):
        rows = db.session.execute(db.select(Greeting).order_by(Greeting.id)).scalars()
        data = [{"language": g.language, "text": g.text} for g in rows]
        return Response(json.dumps({"code": "SUCCESS", "data": data}), 200, content_type=JSON)


api.add_resource(WelcomeData, "/get_welcome_data")
api.add_resource(Greetings, "/get_greetings")
