"""Support for tests against the REAL upstream MCP servers (gti-mcp, google-secops-mcp, secops-soar-mcp).

- ``fakes``: loopback HTTP fakes of the VirusTotal, Chronicle and SOAR APIs over the product's offline
  emulation, with a request log.
- ``harness``: the three upstream server definitions in the product's ``mcpServers`` config format.
- ``launch_gti`` / ``launch_secops``: run with the upstream venv's python; point the servers at the fakes.
- ``pytest_plugin``: fixtures ``upstream_venv``, ``fake_backends``, ``real_upstreams_config``.

The upstreams live in their own venv (``scripts/setup-upstreams.sh`` builds ``.upstreams/``), because
they need mcp 1.x and the project uses mcp 2.x.
"""
