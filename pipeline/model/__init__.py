"""The chat-model client: messages in, text out, over one OpenAI-compatible path.

client (OpenAIChat: retries, deadlines, streaming, constraints), dialects (what each server accepts:
JSON schema, grammar, logit_bias), server (the embedded llama.cpp server on loopback, the offline default).
"""
