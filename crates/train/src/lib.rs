//! The trainer: config, AdamW, learning-rate schedule, the training loop, evaluation,
//! checkpoints and exact resume.
