"""Command-line entry points: t2t_vqem-trainer and t2t_vqem-decoder."""
