# The production image: web (gunicorn), worker and beat all run from it; only the command differs.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SAAS_ENV=production \
    PROMETHEUS_MULTIPROC_DIR=/dev/shm/saas-metrics

WORKDIR /app

# Dependencies first, from pyproject.toml alone, so code changes do not reinstall them.
COPY pyproject.toml ./
RUN python -c "import subprocess, sys, tomllib; \
deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; \
subprocess.check_call([sys.executable, '-m', 'pip', 'install', *deps])"

# The whole source tree: the app reads templates/ and migrations/ from the repository root
# (saas.core.settings.ROOT), so the project is installed in place, not copied into site-packages.
COPY . .
RUN pip install --no-deps --editable . \
    && python -m compileall -q saas billing scheduled migrations \
    && useradd --system --uid 10001 --user-group --home-dir /nonexistent --shell /usr/sbin/nologin saas

# The code stays owned by root and read-only for the process.
USER saas

# Health checks live in docker-compose.yml: the worker and beat run from this image too.
EXPOSE 8000

# Gunicorn's factory syntax: every worker process builds its own app from the environment.
# Its hooks (saas.web.gunicorn_conf) keep the metrics of every worker process in PROMETHEUS_MULTIPROC_DIR.
CMD ["gunicorn", "saas.web.app:create_app()", "--config", "python:saas.web.gunicorn_conf", "--bind", "0.0.0.0:8000", "--workers", "2", \
     "--worker-class", "gthread", "--threads", "4", "--worker-tmp-dir", "/dev/shm", \
     "--access-logfile", "-", "--graceful-timeout", "30", "--logger-class", "saas.web.gunicorn_logger.Logger"]
