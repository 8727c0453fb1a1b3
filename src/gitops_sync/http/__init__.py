"""The inbound HTTP adapter: health, metrics and status of a running watch mode (ASGI, in a thread).

Imported only when ``--http`` is given: a one-shot run never loads Starlette, uvicorn or
prometheus-client. It reads the service through :class:`gitops_sync.service.observing.Observed`
and nothing else.
"""
