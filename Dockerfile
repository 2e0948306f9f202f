# syntax=docker/dockerfile:1
#
# AutoTagger image.
#   docker build -t autotagger .                 # production image (the last stage, `runtime`)
#   docker build --target test -t autotagger-test .   # test image (see docker-compose.test.yml)
#
# One image serves every role; docker/entrypoint.sh picks it from the first argument:
#   web (default) | worker | beat | manage <command> [args] | any other command.

# --- builder: a virtualenv in /opt/venv with every dependency -------------------------------------
FROM python:3.11-slim-bookworm AS builder

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# A compiler only for the rare dependency without a wheel; this stage is thrown away.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/venv

# torch first, from PyTorch's CPU-only index: the default PyPI wheel pulls in ~3 GB of CUDA libraries.
# requirements.txt pins torch==2.13.0, which the installed 2.13.0+cpu satisfies (PEP 440 ignores the
# local "+cpu" label), so the next step keeps this build.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0

COPY requirements.txt /tmp/requirements.txt
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install -r /tmp/requirements.txt \
    && python -c "import sys, torch; sys.exit('a CUDA build of torch replaced the CPU one' if torch.version.cuda else 0)"

WORKDIR /app


# --- test: builder + test tools + the project, run as root (docker-compose.test.yml) -------------
FROM builder AS test

ENV DJANGO_SETTINGS_MODULE=autotagger.settings.test \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1

# Debian's Chromium for the browser tests (pytest -m browser): Playwright drives /usr/bin/chromium and never
# downloads a browser of its own.
RUN apt-get update \
    && apt-get install -y --no-install-recommends chromium fonts-liberation \
    && rm -rf /var/lib/apt/lists/*

# Test tools (pytest, pytest-django, factory_boy, linters); requirements-dev.txt includes
# requirements.txt, which is already installed, so only the extra tools are added.
COPY requirements.txt requirements-dev.txt /tmp/
# llama.cpp (the tests' model server) for a portable x86-64 with AVX2, never from pip's cache, which knows no
# build flags: its default, -march=native, once compiled AMX instructions that died of "invalid opcode" where
# the virtual machine running the image does not enable AMX (see the Makefile).
ENV CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --no-cache-dir "$(grep -m1 '^llama-cpp-python' /tmp/requirements-dev.txt)" \
    && pip install -r /tmp/requirements-dev.txt \
    && python -c "import sys, torch; sys.exit('a CUDA build of torch replaced the CPU one' if torch.version.cuda else 0)"

COPY . /app
# conftest.py writes the test Celery worker's log to .data/ (which .dockerignore leaves out).
RUN mkdir -p /app/.data

CMD ["pytest"]


# --- runtime: the production image ------------------------------------------------------------
FROM python:3.11-slim-bookworm AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    DJANGO_SETTINGS_MODULE=autotagger.settings.production \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    AUTOTAGGER_DATA_DIR=/app/.data \
    HOME=/home/autotagger

RUN apt-get update \
    && apt-get install -y --no-install-recommends libpq5 \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 autotagger \
    && useradd --system --uid 10001 --gid autotagger --home-dir /home/autotagger --create-home \
        --shell /usr/sbin/nologin autotagger

COPY --from=builder /opt/venv /opt/venv

WORKDIR /app
# The code stays owned by root (read-only for the app); only .data is writable by the app user.
COPY . /app

# collectstatic needs settings but no database: the production settings require DJANGO_SECRET_KEY,
# DJANGO_ALLOWED_HOSTS, DATABASE_URL, REDIS_URL (with a password) and EMAIL_HOST, so build-only placeholders are
# given to this one command; nothing connects to those addresses.
RUN chmod 0755 /app/docker/entrypoint.sh \
    && DJANGO_SECRET_KEY=build-only-not-a-secret \
       DJANGO_ALLOWED_HOSTS=localhost \
       DATABASE_URL=postgres://build@localhost/build \
       REDIS_URL=redis://:build-only@localhost:6379/0 \
       EMAIL_HOST=localhost \
       python manage.py collectstatic --noinput \
    && mkdir -p /app/.data \
    && chown autotagger:autotagger /app/.data

USER 10001:10001

EXPOSE 8000

# /healthz checks the database, the broker and the embedding model (the first call loads the model,
# hence the start period). The Host header is the first DJANGO_ALLOWED_HOSTS entry, since Django
# answers 400 to any other host. Only the web role serves HTTP: docker-compose.yml gives the worker
# its own check (celery inspect ping) and disables it for beat.
HEALTHCHECK --interval=15s --timeout=10s --start-period=90s --retries=3 \
    CMD python -c "import os, urllib.request as u; h = (os.environ.get('DJANGO_ALLOWED_HOSTS') or 'localhost').split(',')[0].strip().lstrip('.'); h = 'localhost' if h in ('', '*') else h; u.urlopen(u.Request('http://127.0.0.1:8000/healthz', headers={'Host': h}), timeout=8)"

ENTRYPOINT ["/app/docker/entrypoint.sh"]
CMD ["web"]
