"""Alignment: supervised fine-tuning, reward models, PPO (RLHF) and DPO, with hand-written gradients.

    losses.py    Bradley-Terry, DPO (+ variants), PPO clipped surrogate and value losses, GAE, KL estimators
    logprobs.py  per-token log-probabilities and entropy from logits, forward and backward
    sft.py       instruction / chat data, prompt masking, sequence packing, the SFT loop (`minillm sft`)
    reward.py    Transformer + scalar head on the last token, trained with Bradley-Terry
    rollout.py   batched sampling with a KV cache (minillm.inference's cache and logits processors)
    ppo.py       InstructGPT-style PPO: rollouts, value model, GAE, adaptive KL controller
    dpo.py       DPO training with precomputed reference log-probs and failure-mode diagnostics
    tasks.py     a synthetic preference task a program can check (the examples' labeller)

Every loss returns (value, gradients); the model's gradients come from
`logits, hidden, caches = model.forward_train(tokens)` then `model.backward(caches, dlogits, dhidden)`.
"""
from .dpo import DPOConfig, diagnose, dpo_train, precompute_reference_logps
from .logprobs import (entropy_backward, entropy_forward, logprobs_with_backward, sequence_logprobs,
                       token_logprobs_backward, token_logprobs_forward)
from .losses import (bradley_terry_loss, dpo_implicit_rewards, dpo_loss, gae, kl_estimate, ppo_loss,
                     ppo_stats, value_loss, whiten)
from .ppo import AdaptiveKLController, FixedKLController, PPOConfig, PPOTrainer
from .reward import RewardConfig, ScalarHeadModel, pair_accuracy, rankings_to_pairs, train_reward_model
from .rollout import sample_responses
from .sft import SFTConfig, load_jsonl, pack_examples, pad_batch, sft_train, tokenize_conversation

__all__ = ["bradley_terry_loss", "dpo_implicit_rewards", "dpo_loss", "gae", "kl_estimate", "ppo_loss",
           "ppo_stats", "value_loss", "whiten",
           "token_logprobs_forward", "token_logprobs_backward", "entropy_forward", "entropy_backward",
           "logprobs_with_backward", "sequence_logprobs",
           "SFTConfig", "load_jsonl", "tokenize_conversation", "pad_batch", "pack_examples", "sft_train",
           "ScalarHeadModel", "RewardConfig", "train_reward_model", "pair_accuracy", "rankings_to_pairs",
           "PPOConfig", "PPOTrainer", "AdaptiveKLController", "FixedKLController", "sample_responses",
           "DPOConfig", "dpo_train", "precompute_reference_logps", "diagnose"]
