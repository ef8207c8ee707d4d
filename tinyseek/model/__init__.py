"""The DeepSeek-V3 architecture in pure PyTorch: no distributed code, no I/O.

rope.py (RoPE + YaRN), attention.py (MLA, both paths), moe.py (Gate, Experts, MoE),
transformer.py (Block, MTPModule, Transformer). The latent cache lives in tinyseek.inference.latent_cache.
"""
