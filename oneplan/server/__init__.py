"""The ASGI app: routes, the request pipeline, error rendering per protocol, health, metrics."""
