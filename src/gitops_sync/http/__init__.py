"""The inbound HTTP adapter (ASGI, in a thread beside watch mode); imported only with ``--http``.

Health, metrics and status (:mod:`.app`, :mod:`.serving`) and the registry API (:mod:`.registry`).
A one-shot run never loads Starlette, uvicorn or prometheus-client. It reads the service through
its read-only interfaces (:class:`gitops_sync.service.observing.Observed`) and nothing else.
"""
