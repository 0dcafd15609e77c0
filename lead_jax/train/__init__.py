"""The training core: the state and the jitted steps, per-example gradients
and their projection, losses, optimiser, sharding, checkpoints, the scoring
passes, and the jobs built on them (fine-tuning, base pretraining)."""
