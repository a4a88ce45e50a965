# amebo-logging, with Amebo 0.9.6: the image of the amebo, amebo-subscriber, amebo-load,
# amebo-setup and amebo-logship services in docker-compose.elk.yml (and of the Kubernetes
# DaemonSet in deploy/kubernetes).

# The wheel, built where a C compiler is: its C unwrapper reads Docker's json-file logs at
# about twice the pure-Python speed (the image that runs has no compiler).
FROM python:3.11-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY amebo_logging ./amebo_logging
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && python -c "import zipfile, glob; [w] = glob.glob('/wheels/*.whl'); \
assert any(n.startswith('amebo_logging/ship/_unwrap') and n.endswith('.so') for n in zipfile.ZipFile(w).namelist()), 'no C unwrapper built'"

FROM python:3.11-slim
WORKDIR /app
COPY --from=build /wheels /wheels
COPY deploy/compose ./deploy/compose
RUN pip install --no-cache-dir "$(ls /wheels/amebo_logging-*.whl)[amebo]" amebo==0.9.6 && rm -rf /wheels \
    && useradd --create-home --uid 10001 amebo \
    && mkdir -p /data /state && chown amebo /data /state
USER amebo
ENTRYPOINT []
CMD ["amebo-logship", "--help"]
