"""The site's SQLite database through Flask-SQLAlchemy, set up at import as the reference
backend's was: `instance/welcome.db` under the project folder (the working directory, as
for data/welcome.json), made and seeded by the first import that finds it missing.

Without --preload every worker imports this at the same moment, so the making is done
under a file lock. With --preload the master imports it before forking: no connection is
left open to be shared by the workers (the engine is disposed once the database is ready).
"""

import fcntl
import os

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

INSTANCE = os.path.abspath("instance")
DATABASE = os.path.join(INSTANCE, "welcome.db")
GREETINGS = [
    ("en", "Welcome to HUO Ke Website"),
    ("fr", "Bienvenue sur le site de HUO Ke"),
    ("zh", "\u6b22\u8fce\u6765\u5230\u970d\u514b\u7684\u7f51\u7ad9"),
]


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)


class Greeting(db.Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    language: Mapped[str] = mapped_column(unique=True)
    text: Mapped[str]


def init_db(app):
    """Bind the extension to `app`; make and seed the database if it is not there yet."""
    os.makedirs(INSTANCE, exist_ok=True)
    app.config["SQLALCHEMY_DATABASE_URI"] = "sqlite:///" + DATABASE
    db.init_app(app)
    with open(os.path.join(INSTANCE, "welcome.db.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with app.app_context():
            db.create_all()
            if db.session.execute(db.select(Greeting).limit(1)).first() is None:
                db.session.add_all(Greeting(language=lang, text=text) for lang, text in GREETINGS)
                db.session.commit()
            db.engine.dispose()
