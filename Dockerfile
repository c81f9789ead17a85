# One image for the webhook server and the worker (the command picks which).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY wa_archive ./wa_archive
COPY workflows ./workflows
COPY activities ./activities
COPY webhook ./webhook
COPY bench ./bench
COPY worker.py ./
RUN pip install --no-cache-dir . && useradd --system --uid 1000 archive
USER archive
EXPOSE 8080
CMD ["wa-archive", "serve"]
