"""Run checkpoints: what a training run needs to continue, and how it stops.

- `run`: run checkpoints (step directories, atomic writes, `latest`, pruning, one process or sharded
  DCP) shared by pretraining/SFT, GRPO and tinyseek.parallel's torchrun runs.
- `stop`: the SIGINT/SIGTERM handler every long-running command stops by, checkpoint first.

A Hugging Face model directory is the model's own format (`Transformer.from_pretrained` /
`save_pretrained`, tinyseek/model/hf_checkpoint.py); this package builds on it and the model never
imports it. Nothing is imported here, so loading a model does not import torch.distributed.checkpoint.
"""
