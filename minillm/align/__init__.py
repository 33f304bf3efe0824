"""Alignment: supervised fine-tuning, reward models, PPO (RLHF) and DPO, with hand-written gradients.

    losses.py    Bradley-Terry, DPO (+ variants), PPO clipped surrogate and value losses, GAE, KL estimators
    logprobs.py  per-token log-probabilities and entropy from logits, forward and backward
    sft.py       instruction / chat data, prompt masking, sequence packing, the SFT loop (`minillm sft`)
    reward.py    Transformer + scalar head on the last token, trained with Bradley-Terry
    ppo.py       InstructGPT-style PPO: rollouts with a KV cache, value model, adaptive KL controller
    dpo.py       DPO training with precomputed reference log-probs and failure-mode diagnostics

Every loss returns (value, gradients); the model's gradients come from
`logits, hidden, caches = model.forward_train(tokens)` then `model.backward(caches, dlogits, dhidden)`.
"""
from .losses import (bradley_terry_loss, dpo_implicit_rewards, dpo_loss, gae, kl_estimate, ppo_loss,
                     ppo_stats, value_loss, whiten)

__all__ = ["bradley_terry_loss", "dpo_implicit_rewards", "dpo_loss", "gae", "kl_estimate", "ppo_loss",
           "ppo_stats", "value_loss", "whiten"]
