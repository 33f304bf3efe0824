"""Serving: `minillm serve`, an OpenAI-compatible HTTP server on the paged continuous-batching
engine (the API of OpenAI's /v1/completions and /v1/chat/completions, as vLLM's server offers it).

  protocol.py       request validation and the JSON of responses / stream chunks (pure functions)
  text.py           chat prompts, incremental detokenization, stop strings across token boundaries
  engine_thread.py  the ONE thread that owns the Engine; a thread-safe queue in, per-request events out
  metrics.py        Prometheus text format: gauges, counters, TTFT / inter-token latency histograms
  app.py            the Starlette app (uvicorn): endpoints, SSE streaming, 429 admission, disconnects
(`minillm serve --model PATH ...` is minillm/cli/serve.py)
  static/chat.html  the chat page served at /

    minillm serve --model runs/minillm --port 8000
    from openai import OpenAI
    client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="none")
    client.chat.completions.create(model="minillm", messages=[{"role": "user", "content": "Hi"}])

Needs `pip install minillm[serve]` (uvicorn, starlette); protocol, text and metrics import without it.
"""
