# amebo-logging, with Amebo 0.9.6: the image of the amebo, amebo-subscriber, amebo-load,
# amebo-setup and amebo-logship services in docker-compose.elk.yml (and of the Kubernetes
# DaemonSet in deploy/kubernetes).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY amebo_logging ./amebo_logging
COPY deploy/compose ./deploy/compose
RUN pip install --no-cache-dir '.[amebo]' amebo==0.9.6 && useradd --create-home --uid 10001 amebo \
    && mkdir -p /data /state && chown amebo /data /state
USER amebo
ENTRYPOINT []
CMD ["amebo-logship", "--help"]
