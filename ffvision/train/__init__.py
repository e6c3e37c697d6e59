"""How runs run: the Trainer, checkpoints, schedules, and the train/eval entry points."""
