"""The REST API: OpenStack Trove's v1.0 wire format, served by FastAPI.

`app.create_app(ctx)` builds the application (no import-time state); `routers/v1/` holds one thin
router per resource, `guard.py` the authentication and body limit that run before any body is read,
`schemas/v1/` the request bodies, `views.py` the mapping from domain objects to
Trove's response bodies and `errors.py` the ONE mapping from errors to Trove fault bodies. The API goes
through `services` and `identity`; it never imports store tables, workflows, engines or runtimes.
"""
