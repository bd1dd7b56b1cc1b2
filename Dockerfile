# ioc-workflows-mcp: MCP server over stdio by default; offline stand-ins unless a config is mounted.
#   docker build -t ioc-workflows-mcp .
#   docker run -i --rm ioc-workflows-mcp                                  # stdio, offline stand-ins
#   docker run --rm -p 8000:8000 ioc-workflows-mcp serve --transport http --host 0.0.0.0 --port 8000
#   docker run -i --rm -v $PWD/upstreams.json:/config.json -e IOC_WORKFLOWS_CONFIG=/config.json ioc-workflows-mcp
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY ioc_workflows_mcp ./ioc_workflows_mcp
COPY fixtures ./fixtures
RUN pip install -e . && useradd --create-home --uid 10001 app
USER app
ENV IOC_WORKFLOWS_FIXTURES=/app/fixtures
ENTRYPOINT ["ioc-workflows-mcp"]
CMD ["serve"]
