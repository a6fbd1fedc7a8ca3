"""OpenAI-compatible HTTP surface: protocol models, serving logic, routes."""
