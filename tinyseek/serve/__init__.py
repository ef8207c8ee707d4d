"""OpenAI/DeepSeek-compatible HTTP server over the inference engine (`tinyseek serve`).

Layout: protocol (request/response models) -> state (settings, readiness) -> engine_loop (engine
thread <-> asyncio) -> generation (one choice: reasoning budget, split, counts) -> choices (admission,
streaming merge, disconnects) -> chat / completions (routes) -> app (FastAPI, middleware, lifespan).
"""
