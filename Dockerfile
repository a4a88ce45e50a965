# amebo-logging: the image of the demo, setup and amebo-logship services in docker-compose.elk.yml.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY amebo_logging ./amebo_logging
RUN pip install --no-cache-dir . && useradd --create-home --uid 10001 amebo \
    && mkdir -p /logs /state && chown amebo /logs /state
USER amebo
ENTRYPOINT []
CMD ["amebo-logship", "--help"]
