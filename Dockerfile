# Hehe (和合) — one image for the backend (API, web chat, scheduler, outbox, Telegram bot).
# Models (multilingual USE, insightface SCRFD/MobileFaceNet) ship inside PyPI packages:
# nothing is downloaded at run time.

# ---------------------------------------------------------------- build
FROM python:3.11-slim AS build
# Compilers for dependencies without a wheel for this platform.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/hehe
ENV PATH=/opt/hehe/bin:$PATH PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Dependencies first (cached while only the code changes); the s3 extra (boto3) for the
# replicas deployment, whose uploads live in an S3-compatible bucket (deploy/compose.replicas.yml).
COPY pyproject.toml README.md ./
RUN mkdir -p backend bot handlers knowledge_base scheduler migrations \
 && for p in backend bot handlers knowledge_base scheduler migrations; do touch $p/__init__.py; done \
 && pip install ".[s3]" && pip uninstall -y hehe
COPY backend ./backend
COPY bot ./bot
COPY handlers ./handlers
COPY knowledge_base ./knowledge_base
COPY scheduler ./scheduler
COPY migrations ./migrations
RUN pip install --no-deps . && hehe --help >/dev/null

# ---------------------------------------------------------------- run
FROM python:3.11-slim
# CJK fonts for charts and PDF exports (督办 reports, digests).
RUN apt-get update \
 && apt-get install -y --no-install-recommends fonts-noto-cjk libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 hehe \
 && mkdir -p /data && chown hehe:hehe /data
COPY --from=build /opt/hehe /opt/hehe
ENV PATH=/opt/hehe/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    ANONYMIZED_TELEMETRY=False \
    HEHE_DATA_DIR=/data \
    HEHE_HOST=0.0.0.0 \
    HEHE_PORT=8000
USER hehe
WORKDIR /home/hehe
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=90s --retries=5 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4).status == 200 else 1)"
CMD ["hehe", "serve", "--host", "0.0.0.0"]
