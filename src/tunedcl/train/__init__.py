"""Training: config, the pretraining / cross-entropy loop, checkpoints and resume, evaluation glue."""
