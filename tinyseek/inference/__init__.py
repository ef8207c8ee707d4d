"""Inference, read top-down: llm.py (the offline API) → engine.py (requests, the step loop) →
scheduler.py (each sequence's life: admission, block_manager.py's cache blocks and prefix keys, finish
rules) → model_runner.py (one step's forwards over latent_cache.py, then sampler.py); request.py holds
what flows between them, sampling_params.py what a request asks for, auto_dtype.py `dtype="auto"`."""
