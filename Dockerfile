# One image for the trainer job, the workers and the dashboard.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY segstream ./segstream
RUN pip install . && useradd --create-home segstream && mkdir -p /models && chown segstream /models
USER segstream
ENTRYPOINT ["segstream"]
CMD ["--help"]
