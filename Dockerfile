# Siyu's image: every process (web, worker, welcome worker, scheduler) runs from it; docker-compose.yml
# shows how. Build: docker build -t siyu .
FROM python:3.11-slim-bookworm

# A CJK font for the printable posters (SIYU_POSTER_FONT finds Debian's fonts-wqy-microhei by itself).
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends fonts-wqy-microhei \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 1000 siyu
WORKDIR /opt/siyu
COPY pyproject.toml README.md wsgi.py ./
COPY bot ./bot
COPY handlers ./handlers
COPY admin ./admin
COPY migrations ./migrations
COPY deploy ./deploy
RUN pip install --no-cache-dir . && mkdir -p /run/siyu-metrics && chown siyu /run/siyu-metrics

USER siyu
ENV FLASK_APP=wsgi \
    SIYU_BIND=0.0.0.0:8000 \
    SIYU_LOG_FORMAT=json \
    PROMETHEUS_MULTIPROC_DIR=/run/siyu-metrics \
    PYTHONUNBUFFERED=1
EXPOSE 8000
CMD ["gunicorn", "-c", "deploy/gunicorn.conf.py", "wsgi:app"]
