"""Evaluate a checkpoint on the paper's benchmarks (experiments/evaluate.py).

  python -m experiments.evaluate --checkpoint assets/smollm2 \
      --data_dir data/eval --benchmarks mmlu,gsm8k,tydiqa,humaneval \
      --output results/smollm2_eval.json

`--checkpoint` is a local Hugging Face checkpoint directory, a .gguf file, or
a LEAD workdir (its latest checkpoint, LoRA unmerged). Hardware: any; on a
2-core CPU the SmolLM2-135M model needs hours for the full benchmarks, so use
`--limit` (e.g. 10: about 10 minutes for all four); an 8B model wants one TPU
v4-8 / A100 (roughly 1-2 hours for all four at the paper's settings, most of
it HumanEval's 164 x 20 samples). Results: one JSON with every benchmark's
metrics and seconds.
"""

import ml_collections

from configs import base_data, base_eval


def get_config(arg=None):
  """The eval sub-config plus what a stand-alone run needs; `arg` is unused."""
  del arg
  c = ml_collections.ConfigDict()
  c.checkpoint = ""  # local HF checkpoint dir | .gguf file | LEAD workdir
  c.tokenizer = ""  # "" = the checkpoint's own tokenizer | local HF tokenizer dir | byte_level
  c.output = ""  # results JSON; "" = <checkpoint dir>/eval_results.json
  c.data = base_data.get()  # template (and the synthetic suite's test set)
  c.eval = base_eval.get()
  c.eval.benchmarks = "mmlu,gsm8k,tydiqa,humaneval"
  c.lock()
  return c
