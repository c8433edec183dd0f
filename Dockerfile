# One image for every process of the product: web (gunicorn), Celery worker and beat,
# A2I Local and moto's S3 server. docker-compose.yml picks the process with `command`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first (only pyproject.toml), so a code change does not reinstall them.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY manage.py ./
COPY dashboard ./dashboard
COPY loops ./loops
COPY a2i_local ./a2i_local
COPY templates ./templates
COPY static ./static
# Editable, so settings' BASE_DIR stays /app for every entry point (gunicorn, celery, python -m).
RUN pip install --no-deps -e .

# Static files are collected at build time into /app/var/staticfiles and served by whitenoise.
# The secret is a build-time placeholder: collectstatic needs settings, not a real key.
RUN DEBUG=false SECRET_KEY=collectstatic-only-build-time-placeholder python manage.py collectstatic --noinput

# Never run as root. var/ holds beat's schedule and A2I Local's SQLite store (volumes).
RUN useradd --create-home --uid 1000 app \
    && mkdir -p /app/var/a2i-local /app/var/beat \
    && chown -R app:app /app/var
USER app

EXPOSE 8000
CMD ["gunicorn", "dashboard.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-"]
