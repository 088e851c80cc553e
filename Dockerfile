# InsightReader in a container: one process, the SQLite database on the /data volume.
#
#   docker build -t insightreader .
#   docker run -d --name insightreader -p 127.0.0.1:8000:8000 -v insightreader-data:/data \
#       -e OPENAI_API_KEY=sk-... insightreader
#
# Not built or run in this project's CI (no Docker engine there): see docs/deploy.md.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# CA certificates for TLS to the LLM provider; nothing else is needed at run time.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# A user of its own; it owns /data, where the database, its secret and its lock live.
RUN groupadd --system --gid 10001 insightreader \
    && useradd --system --uid 10001 --gid insightreader --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin insightreader \
    && mkdir -p /data \
    && chown insightreader:insightreader /data

WORKDIR /src
COPY pyproject.toml README.md config.toml ./
COPY migrations ./migrations
COPY insightreader ./insightreader
RUN pip install . && rm -rf /src

ENV INSIGHTREADER_DATABASE__PATH=/data/insightreader.db \
    INSIGHTREADER_SERVER__BIND=0.0.0.0:8000

VOLUME ["/data"]
EXPOSE 8000
USER insightreader
WORKDIR /data

# The slim image has no curl: ask /healthz with Python, on the port the server binds.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('INSIGHTREADER_SERVER__BIND', '0.0.0.0:8000').rpartition(':')[2]; urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)"]

# SIGTERM drains (server.graceful_timeout, 10 s by default): give `docker stop` more, e.g. -t 30.
STOPSIGNAL SIGTERM
CMD ["insightreader", "serve"]
