# The bankflow image: API (`python -m api.serve`), worker (`python worker.py`) and CLI
# (`bankflow db upgrade`). Used by docker-compose.yml.
FROM python:3.11-slim

# PYTHONPATH: import the code from /app, not the installed copy, because migrations/ and
# alembic.ini live here beside the packages, which is where activities/migrate.py looks for them.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app

WORKDIR /app

# Dependencies first, in their own layer: rebuilt only when pyproject.toml changes.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt

COPY . .
# --no-deps: already installed above; this adds the `bankflow` console script.
# .data/audit-spool: where the API keeps audit entries while Postgres is down (a volume in
# docker-compose); owned by the app user so the volume is created writable for it.
# compileall: the workflow sandbox imports a workflow's module for every run; with bytecode in
# the image it loads instead of compiling (PYTHONDONTWRITEBYTECODE keeps the image read-only).
RUN pip install --no-deps . \
    && rm -rf build *.egg-info \
    && python -m compileall -q activities api domain schemas workflows worker.py \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin bankflow \
    && mkdir -p /app/.data/audit-spool && chown bankflow /app/.data/audit-spool

USER bankflow
EXPOSE 8000
# api.serve: uvicorn believes no X-Forwarded-For (only the app does, from BANKFLOW_TRUSTED_PROXIES);
# WEB_CONCURRENCY sets the number of API processes.
CMD ["python", "-m", "api.serve", "--host", "0.0.0.0", "--port", "8000"]
