"""ASCI's own services: deployed from the registry, rolled forward on new tags, rolled back when unhealthy."""
