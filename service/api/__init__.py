"""The HTTP API: `create_app(runtime)` builds the FastAPI application."""
