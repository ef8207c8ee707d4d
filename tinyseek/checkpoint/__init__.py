"""Checkpoints: Hugging Face model directories and resumable run checkpoints.

- `hf`: the HF safetensors layout <-> Transformer (names, sharding, FP8 dequantization); what
  `Transformer.from_pretrained` / `save_pretrained` call.
- `run`: run checkpoints (step directories, atomic writes, `latest`, pruning, one process or sharded
  DCP) shared by pretraining/SFT, GRPO and tinyseek.parallel's torchrun runs.
- `stop`: the SIGINT/SIGTERM handler every long-running command stops by, checkpoint first.

Nothing is imported here, so loading a model directory does not import torch.distributed.checkpoint.
"""
