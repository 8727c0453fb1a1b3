"""Plain value types shared by every layer: manifests, registry state, plans, problems. No behaviour."""
