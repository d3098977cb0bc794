"""Pydantic v2 models shared by the API, the workflows and the activities."""
