# The pipeline image (worker and sink); the broker and ClickHouse come from docker-compose.yml.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY streams streams
COPY agents agents
COPY sinks sinks
COPY schemas schemas
COPY config config
COPY bench bench
RUN pip install --no-cache-dir -e .
ENV PYTHONUNBUFFERED=1
