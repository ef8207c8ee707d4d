"""The DeepSeek-V3 architecture in pure PyTorch: no distributed code; its only files are the HF layout.

rope.py (RoPE + YaRN), attention.py (MLA, both paths), moe.py (Gate, Experts, MoE),
transformer.py (Block, MTPModule, Transformer), hf_checkpoint.py (the Hugging Face directory:
safetensors shards, FP8), cpu_attention.py (the C++ causal attention compiled CPU training uses,
csrc/). The latent cache lives in tinyseek.inference.latent_cache.
"""
