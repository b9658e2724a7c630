"""Talking to OpenAI-compatible servers: the client, its deadline and reply cap, and server text made safe to print."""
