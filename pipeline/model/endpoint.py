"""What one OpenAI-compatible endpoint is held to, and how a request to it is written.

`Endpoint` is the half of `client.OpenAIChat` that speaks a server's dialect: it finds the endpoint's
`Capability` once (the embedded server's is known, a configured kind is taken as said, "auto" reads the server
kind and sends the probe), then writes each request's schema, JSON mode and logit bias the way that kind takes
them, minus whatever the endpoint has already rejected.

Left out: the dialects themselves (dialects.py: kinds, the probe's schema and verdict, bias fields), and sending,
retrying and bounding the call (client.py, guard.py).
"""

import threading

from pipeline.model.dialects import (EMBEDDED, KNOWN, PROBE_MAX_TOKENS, PROBE_MESSAGES, PROBE_SCHEMA, Capability,
                                     bias_fields, configured, detect_kind, is_ollama, judge, probe_path, probe_verdict,
                                     read_probe, schema_fields, server_root, with_bias, write_probe)


class Endpoint:
    """Capability and request writing for OpenAIChat, which supplies `model`, `seed`, `temperature`, `timeout`,
    `frequency_penalty`, `base_url`, `server`, `_url`, `_client`, `_ensure_client()` and `_final_error()`."""

    def __init__(self, structured: str, probe_cache):
        self._json_ok = True  # set False once the endpoint rejects response_format
        self._schema_ok = True  # set False once the endpoint rejects a JSON schema in response_format
        self._usage_ok = True  # set False once the endpoint rejects stream_options
        self._bias_ok = True  # set False once the endpoint rejects logit_bias
        # what the endpoint can be held to (dialects.py): "auto" probes it once; probe_cache keeps the answer
        self.structured, self.probe_cache = structured, probe_cache
        self._capability: Capability | None = None
        self._ids = None  # word -> token ids, for a logit bias by id
        self._probing = threading.Lock()

    @property
    def enforces_schema(self) -> bool:
        """Whether a JSON schema's patterns are known to hold in replies: the server compiles them to a
        grammar (the probe saw it do so). Elsewhere the caller shows the choices and validates the reply."""
        return self.capability.grammar and self._schema_ok

    @property
    def capability(self) -> Capability:
        """What this endpoint can be held to, found once: the embedded server's is known, a configured
        `structured` kind is taken as said, "auto" reads the server kind and probes it (dialects.py)."""
        with self._probing:
            if self._capability is None:
                self._capability = self._find_capability()
        return self._capability

    def _find_capability(self) -> Capability:
        if self.server is not None:
            return EMBEDDED
        client = self._ensure_client()  # the model's name is known after it: tiktoken needs it
        if self.structured != "auto":
            return self._with_bias(configured(self.structured))
        kind, sure = self._detect(client)
        path = probe_path(self.probe_cache, self._url, self.model, kind) if self.probe_cache and sure else None
        capability = read_probe(path)
        if capability is None:
            capability = judge(kind, sure, self._try_schema(client, kind) if KNOWN[kind][0] else None)
            write_probe(path, capability, self._url, self.model)  # the bias is checked again on every start: cheap
        return self._with_bias(capability)

    def _detect(self, client) -> tuple[str, bool]:
        """The server kind and whether its listing or headers said it (else: Ollama by its own API, or
        OpenAI's dialect, which any compatible server should take)."""
        import openai

        try:
            raw = client.models.with_raw_response.list()
            listing, headers = raw.http_response.json(), dict(raw.headers)
        except (openai.APIConnectionError, openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            raise self._final_error(exc) from None
        except (openai.APIError, ValueError):
            listing, headers = None, {}
        kind = detect_kind(self.base_url, listing, headers)
        if kind is None and is_ollama(self._fetch):
            kind = "ollama"
        return kind or "openai", kind is not None

    def _fetch(self, method: str, path: str, body: dict | None) -> dict | list | None:
        """JSON from the server's own API beside /v1 (Ollama's /api/version, /tokenize), through the client's
        connection pool and key; None when it fails."""
        import httpx
        import openai

        url, options = server_root(self.base_url) + path, {"timeout": min(self.timeout, 30.0)}
        try:
            if method == "GET":
                reply = self._client.get(url, cast_to=httpx.Response, options=options)
            else:
                reply = self._client.post(url, cast_to=httpx.Response, body=body, options=options)
            return reply.json()
        except (openai.APIError, httpx.HTTPError, ValueError):
            return None

    def _try_schema(self, client, kind: str) -> str:
        """The probe: PROBE_SCHEMA in the kind's dialect; "grammar", "shape", "ignored" or "rejected"."""
        import openai

        fields = schema_fields(kind, PROBE_SCHEMA)
        kwargs = {"model": self.model, "messages": PROBE_MESSAGES, "temperature": 0, "max_tokens": PROBE_MAX_TOKENS,
                  **fields}
        if self.seed is not None:
            kwargs["seed"] = self.seed
        try:
            reply = client.chat.completions.create(**kwargs)
        except openai.BadRequestError:
            return "rejected"
        except (openai.APIConnectionError, openai.APIStatusError) as exc:
            raise self._final_error(exc) from None
        choices = getattr(reply, "choices", None) or []
        return probe_verdict((choices[0].message.content or "") if choices else "")

    def _with_bias(self, capability: Capability) -> Capability:
        """The capability with its logit bias checked (dialects.with_bias); keeps `word -> ids` where needed."""
        capability, self._ids = with_bias(capability, self.model, self._fetch)
        return capability

    def _relax(self, why: str, kwargs: dict, schema: dict | None, json_mode: bool, streaming: bool) -> bool:
        """After a 400 (`why`: its detail), stop sending the one feature the endpoint most likely refused;
        False when nothing is left to drop."""
        if "logit_bias" in kwargs.get("extra_body", {}) and "logit" in why.lower():
            self._bias_ok = False  # e.g. a reasoning model: the words go unsteered, the caller still checks
        elif schema is not None and self._schema_ok:
            self._schema_ok = False  # endpoint does not take a schema: plain JSON mode, validated by the caller
        elif (json_mode or schema is not None) and self._json_ok:
            self._json_ok = False  # endpoint does not know response_format: ask without it
        elif streaming and self._usage_ok:
            self._usage_ok = False  # endpoint does not know stream_options
        else:
            return False
        return True

    def _request(self, messages, max_tokens, json_mode, stream, schema=None, seed=None, temperature=None,
                 avoid=None) -> dict:
        """The keyword arguments of one chat.completions.create, in the endpoint's dialect."""
        temperature = self.temperature if temperature is None else temperature
        kwargs = {"model": self.model, "messages": messages, "temperature": temperature}
        seed = self.seed if seed is None else seed
        if seed is not None:
            kwargs["seed"] = seed
        if max_tokens:
            kwargs["max_tokens"] = max_tokens
        capability, extra = self.capability, {}
        if schema is not None and self._schema_ok and capability.kind != "none":
            fields = schema_fields(capability.kind, schema)
            extra.update(fields.pop("extra_body", {}))
            kwargs.update(fields)
        elif json_mode and self._json_ok:
            kwargs["response_format"] = {"type": "json_object"}
        if self.frequency_penalty:
            kwargs["frequency_penalty"] = self.frequency_penalty
        if avoid and self._bias_ok:
            extra.update(bias_fields(capability.bias, avoid, self._ids))
        if extra:
            kwargs["extra_body"] = extra
        if stream:
            kwargs["stream"] = True
            if self._usage_ok:
                kwargs["stream_options"] = {"include_usage": True}
        return kwargs
