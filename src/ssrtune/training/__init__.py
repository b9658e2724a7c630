"""Training: the trainer (TRL's SFTTrainer with LoRA or full fine-tuning), several processes under accelerate, and
which checkpoint is complete."""
