"""The chat-model client: messages in, text out, over one OpenAI-compatible path.

client (OpenAIChat: the seam, retries, streaming), guard (deadlines, cancels, one-line errors), endpoint (what an
endpoint is held to, requests in its dialect), dialects (what each server accepts: JSON schema, grammar,
logit_bias), server (the embedded llama.cpp server on loopback, the offline default).
"""
