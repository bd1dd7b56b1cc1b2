"""ioc-workflows-mcp: deterministic IOC enrich / pivot / correlate workflows as one MCP server."""

__version__ = "0.1.0"
