"""t2t_vqem: vector quantized autoencoders trained with hard and soft EM (Roy et al. 2018)."""
