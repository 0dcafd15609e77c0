"""lead_jax: LEAD iterative data selection for instruction tuning, in JAX/Flax.

Array names carry their shape as a suffix. Legend:
  N  pool samples          B  batch rows          L  sequence length
  T  new tokens in a step  S  KV-cache slots      V  vocabulary
  D  hidden size           K  projection dim      C  clusters
  P  LoRA parameters (flattened)
e.g. `tokens_BxL`, `loss_B`, `g_BxK`, `idu_N`, `cluster_N`.
"""

import os as _os

# transformers serves only tokenizers and configs here; without PyTorch it warns
# at import that "Models won't be available", which says nothing about this project.
_os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
