"""The inbound HTTP adapter (ASGI, in a thread beside watch mode); imported only with ``--http``."""
