"""The catalog (models, aliases, deployments, fallbacks) and choosing where a request goes."""
