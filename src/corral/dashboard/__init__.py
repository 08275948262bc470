"""The web dashboard: a local web UI that is a client of the daemon over the control socket.

Run it with ``python -m corral.dashboard`` (``corral dashboard``).  Nothing outside this
package imports it, so ``corral ls`` and the daemon never load Starlette, uvicorn or Jinja2.
"""
