# One image for every Equilibrate component; the command picks the component:
#   docker build -t equilibrate .
#   docker run --rm equilibrate status
FROM python:3.11-slim-bookworm

# espeak-ng renders voice messages offline (gTTS is used when Google is reachable).
RUN apt-get update \
 && apt-get install -y --no-install-recommends espeak-ng \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt
COPY pyproject.toml README.md ./
COPY equilibrate ./equilibrate
RUN pip install --no-cache-dir --no-deps .

# Never root; the data volume (archive, history, audit log, model registry) belongs to this user.
RUN useradd --create-home --uid 10001 equilibrate && mkdir -p /data && chown equilibrate /data
USER equilibrate
ENV DATA_DIR=/data \
    MODEL_REGISTRY_DIR=/data/model/registry \
    EMBEDDED_SERVICES=never \
    KAFKA_BOOTSTRAP_SERVERS=kafka:9092 \
    REDIS_URL=redis://redis:6379/0
VOLUME ["/data"]
ENTRYPOINT ["equilibrate"]
CMD ["status"]
