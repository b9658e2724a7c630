"""Models: loading (safetensors, no remote code by default), where each configured model comes from, and where a model
runs and in which precision."""
