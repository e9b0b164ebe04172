"""Fine-tuning: typed config, data preparation, losses, guards against forgetting, the loop, export."""
