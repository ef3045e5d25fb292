# syntax=docker/dockerfile:1
# Build stage: wheels for the service and its dependencies.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY idp ./idp
COPY waiting_pages ./waiting_pages
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# Runtime stage: no compilers, a non-root user, migrations beside the package.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    IDP_ENV=production IDP_HOST=0.0.0.0 IDP_PORT=8000 IDP_INSTANCE_PATH=/var/lib/idp
# A fixed numeric user, so Kubernetes' runAsNonRoot can check it (deploy/kubernetes uses 10001).
RUN groupadd --system --gid 10001 idp && useradd --system --uid 10001 --gid idp --home /app idp \
    && mkdir -p /var/lib/idp && chown idp:idp /var/lib/idp
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/* && rm -rf /wheels
WORKDIR /app
COPY --chown=idp:idp migrations ./migrations
COPY --chown=idp:idp wsgi.py gunicorn.conf.py alembic.ini ./
ENV IDP_MIGRATIONS_DIR=/app/migrations
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)" || exit 1
CMD ["idp", "serve"]
