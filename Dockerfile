# syntax=docker/dockerfile:1
# rgunicorn as the reference deployment's backend container:
#
#   docker build -t web_backend:v1 .
#   docker run -it -d -p 5000:443 --name web_backend web_backend:v1 bash ./start.sh
#   curl -k https://localhost:5000/api/v1/welcome/get_welcome_data
#
# One process tree: the rgunicorn master (PID 1, via start.sh's exec) supervises the TLS
# front (:443, :80 -> 301) and the workers (unix socket for the front, 0.0.0.0:5000 as the
# reference gunicorn bound). See start.sh for the environment it reads.
#
# A Python WSGI app, the reference Dockerfile's way: its project folder (with a
# requirements.txt) in the build context, installed into a venv in the image, chosen with APP:
#
#   docker build --build-arg PROJECT=examples/python/welcome -t web_backend:v1 .
#   docker run -d -p 5000:443 -e APP=app.app:app web_backend:v1
#
# Without PROJECT the image serves the built-in welcome app, as before.

# ---- build: the whole workspace in release mode, with Python support --------------------
FROM rust:1-bookworm AS build
# The libpython the binaries embed: Debian's python3, the one the runtime image runs; and
# venv, to make the project's virtualenv here (see PROJECT below).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3-dev python3-venv \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The registry and target/ are cache mounts: a rebuild after a source change compiles only
# the workspace crates. The binaries are copied out of the cache mount into /out.
RUN --mount=type=cache,id=rgunicorn-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=rgunicorn-target,target=/src/target \
    PYO3_PYTHON=/usr/bin/python3 cargo build --release --locked --features python \
      --bin rgunicorn --bin rgunicorn-front \
 && mkdir -p /out \
 && cp target/release/rgunicorn target/release/rgunicorn-front /out/
# The Python project to serve: a folder of the build context (empty: none), and its
# virtualenv with its requirements.txt installed from PyPI. Made here, where pip's
# dependencies are, and copied to the same path in the runtime image, whose python3 is the
# same Debian package.
ARG PROJECT=
RUN mkdir -p /out/project \
 && if [ -n "$PROJECT" ]; then \
      [ -d "/src/$PROJECT" ] || { echo "PROJECT=$PROJECT is not a folder of the build context" >&2; exit 1; }; \
      cp -a "/src/$PROJECT/." /out/project/; \
    fi \
 && if [ -f /out/project/requirements.txt ]; then \
      python3 -m venv /app/venv \
      && /app/venv/bin/pip install --no-cache-dir --disable-pip-version-check -r /out/project/requirements.txt; \
    else \
      python3 -m venv --without-pip /app/venv; \
    fi

# ---- runtime: debian slim, openssl for the self-signed fallback and the healthcheck, ------
# ---- python3 (and its shared library) for Python apps --------------------------------------
FROM debian:bookworm-slim
# Unpinned on purpose: bookworm's security updates replace these versions, and a pinned
# version stops building the day it is superseded.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends openssl libcap2-bin python3 libpython3.11 \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log \
 && groupadd --system --gid 10001 rgunicorn \
 && useradd --system --uid 10001 --gid rgunicorn --home-dir /app --no-create-home \
      --shell /usr/sbin/nologin rgunicorn \
 && install -d -o rgunicorn -g rgunicorn -m 0750 /run/rgunicorn /etc/rgunicorn/cert

COPY --from=build /out/rgunicorn /out/rgunicorn-front /usr/local/bin/
# The processes run as rgunicorn (uid 10001), not root. Binding 443 and 80 needs
# CAP_NET_BIND_SERVICE: the binaries carry it as a file capability (in Docker's default
# capability set), so nothing in the container ever runs as root. With --cap-drop ALL,
# add --cap-add NET_BIND_SERVICE. Set here, not in the build stage: COPY --from does not
# keep file capabilities everywhere (BuildKit drops them), at the price of a second copy
# of the binaries (8 MB) in this layer.
RUN setcap cap_net_bind_service=+ep /usr/local/bin/rgunicorn \
 && setcap cap_net_bind_service=+ep /usr/local/bin/rgunicorn-front

WORKDIR /app
COPY start.sh ./
COPY conf/ ./conf/
# The project and its venv (active for rgunicorn through VIRTUAL_ENV), read-only for the
# app's user but for the project's instance/ folder. start.sh runs the app from
# /app/project, as the reference ran gunicorn from its project folder.
COPY --from=build /out/project/ /app/project/
# The one folder of a project the app's user may write: Flask's instance folder, for what
# an app makes at run time (the welcome example's SQLite database, made at import).
RUN if [ -n "$(ls -A /app/project)" ]; then \
      install -d -o rgunicorn -g rgunicorn -m 0750 /app/project/instance; \
    fi
COPY --from=build /app/venv/ /app/venv/
ENV VIRTUAL_ENV=/app/venv \
    PATH=/app/venv/bin:$PATH
# Certificates put in ssl_files/ before the build (the reference deployment's way; see
# ssl_files/README.md: mounting at run time keeps the key out of the image). Without one,
# start.sh makes a self-signed certificate at start and says so.
COPY --chown=rgunicorn:rgunicorn ssl_files/ /etc/rgunicorn/cert/
RUN find /etc/rgunicorn/cert -type f -name '*.key' -exec chmod 0600 {} +

USER 10001:10001
EXPOSE 443 80
# TERM is the graceful stop: in-flight requests finish within graceful_timeout (8 s in
# conf/container.toml, under docker stop's 10 s).
STOPSIGNAL SIGTERM
# An https request through the front to the workers, with openssl s_client: no curl.
HEALTHCHECK --interval=30s --timeout=10s --start-period=10s --retries=3 \
  CMD ["bash", "/app/start.sh", "healthcheck"]
CMD ["bash", "./start.sh"]
