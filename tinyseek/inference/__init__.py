"""Inference: the engine (scheduler, paged latent cache, prefix cache), sampling, MTP speculation, LLM."""
