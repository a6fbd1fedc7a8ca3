"""Ray Serve runtime for ray-llm."""
