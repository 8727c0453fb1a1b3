"""gitops-sync: keeps an etcd v3 capability registry in step with a Git directory of manifests.

The package is laid out as its architecture (docs/architecture.md, "Layers"); imports point one way:

    cli -> service -> sources / store -> core -> model

``errors`` and ``settings`` sit beside the layers and are shared by them.
"""

__version__ = "0.1.0"
