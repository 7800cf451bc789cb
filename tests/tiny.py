"""The tiny Gin configs the trainer tests share: the embedded problem, 16-wide models.

A test adds its own bindings after one of them; a later binding of the same
parameter overrides the earlier one.
"""

PROBLEM = """
Trainer.problem = 'translate_grammar_ende'
Trainer.batch_tokens = 256
Trainer.eval_every = 0
Trainer.eval_bleu_examples = 0
Trainer.log_every = 1
translate_grammar_ende.num_train = 300
translate_grammar_ende.num_eval = 20
translate_grammar_ende.vocab_size = 300
make_optimizer.warmup_steps = 2
"""

TRANSFORMER = (
  PROBLEM
  + """
Trainer.model = 'transformer'
transformer.hidden_size = 16
transformer.num_layers = 1
transformer.num_heads = 2
transformer.filter_size = 32
transformer.dropout = 0.0
"""
)

LATENT_EM = (
  PROBLEM
  + """
Trainer.model = 'latent_transformer_em'
latent_transformer_em.hidden_size = 16
latent_transformer_em.num_layers = 1
latent_transformer_em.num_heads = 2
latent_transformer_em.filter_size = 32
latent_transformer_em.dropout = 0.0
latent_transformer_em.compress_steps = 1
latent_transformer_em.mask_startup_steps = 0
latent_transformer_em.latent_loss_start_step = 0
latent_transformer_em.bottleneck_args = {'codebook_size': 16, 'decay': 0.5}
"""
)
