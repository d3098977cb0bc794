"""The FastAPI service: authentication, validation, process start/decide, and read models."""
