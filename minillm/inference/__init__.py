"""Inference: turning a trained Transformer into text.

  sampling.py        logits processors (temperature, top-k, top-p, min-p, repetition penalty), Sampler
  kv_cache.py        contiguous per-sequence KV cache (L, B, Hkv, S, D)
  generate.py        generate(): prefill + decode for one sequence, with or without the cache
  speculative.py     speculative decoding with a draft model or prompt lookup (Leviathan et al. 2023)
  paged_kv_cache.py  block allocator, block tables, copy-on-write, prefix cache (Kwon et al. 2023)
  engine.py          continuous-batching engine over the paged cache: chunked prefill, preemption
  beam_search.py     beam search whose beams share prefix blocks in the paged cache

    from minillm.inference import generate, Engine, speculative_generate
    new_ids = generate(model, prompt_ids, 50, temperature=0.8, top_p=0.95, seed=0)
"""
from .beam_search import beam_search
from .engine import Engine
from .generate import generate
from .kv_cache import KVCache, kv_bytes_per_token
from .paged_kv_cache import BlockAllocator, NoFreeBlocks, PagedKVCache
from .speculative import prompt_lookup_generate, speculative_generate
from .sampling import (CountPenalty, MinP, RepetitionPenalty, Sampler, Temperature, TopK, TopP, apply,
                       log_softmax, processors, sample, softmax, top_logprobs)

__all__ = ["generate", "KVCache", "kv_bytes_per_token", "Sampler", "sample", "softmax", "processors",
           "apply", "Temperature", "TopK", "TopP", "MinP", "RepetitionPenalty", "speculative_generate",
           "prompt_lookup_generate", "BlockAllocator", "PagedKVCache", "NoFreeBlocks", "Engine", "beam_search", "CountPenalty", "log_softmax", "top_logprobs"]
