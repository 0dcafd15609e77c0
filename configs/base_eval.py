"""The `eval` sub-config: which benchmarks, where their files are, and each protocol.

Not an experiment on its own: experiment configs attach it as `config.eval`
(the LEAD loop's final evaluation reads it; configs/evaluate.py runs it on a
checkpoint). Each benchmark's sub-config is what its evaluator takes
(lead_jax.evals.<benchmark>.evaluate); the defaults are open-instruct's
protocols as docs/method.md lists them. `data_dir` holds one folder per benchmark:

  <data_dir>/mmlu/{dev,test}/<subject>_{dev,test}.csv
  <data_dir>/gsm8k/test.jsonl
  <data_dir>/tydiqa/tydiqa-goldp-v1.1-{dev,train}.json
  <data_dir>/humaneval/HumanEval.jsonl.gz
The synthetic suite reads the run's held-out test set (data.test_path, or the
lake's test.jsonl in the workdir).
"""

import ml_collections

BENCHMARKS = ("mmlu", "gsm8k", "tydiqa", "humaneval", "synthetic")


def get() -> ml_collections.ConfigDict:
  """Evaluation settings read by lead_jax.evals.runner and the evaluators."""
  c = ml_collections.ConfigDict()
  c.benchmarks = "synthetic"  # comma-separated subset of mmlu,gsm8k,tydiqa,humaneval,synthetic
  c.data_dir = ""  # folder with one sub-folder per benchmark (layout in the module doc)
  # Quick runs, 0 = all: questions per MMLU subject / TyDiQA language, GSM8K
  # questions, HumanEval problems, test records per synthetic task.
  c.limit = 0  # cap per benchmark (see above)
  c.seed = 0  # sampling key of HumanEval (greedy benchmarks ignore it)

  c.mmlu = ml_collections.ConfigDict()
  c.mmlu.n_shot = 5  # dev examples before each question (fewer when over max_prompt_tokens)
  c.mmlu.max_prompt_tokens = 2048  # drop shots until the prompt fits
  c.mmlu.batch_size = 8  # prompts per jitted scoring call
  c.mmlu.subjects = ()  # subjects to run; () = every <subject>_test.csv found

  c.gsm8k = ml_collections.ConfigDict()
  c.gsm8k.n_shot = 8  # chain-of-thought exemplars in the prompt
  c.gsm8k.exemplars = "open_instruct"  # open_instruct (embedded) | file (<dir>/cot_exemplars.jsonl)
  c.gsm8k.max_new_tokens = 512  # greedy generation length
  c.gsm8k.batch_size = 8  # prompts decoded together

  c.tydiqa = ml_collections.ConfigDict()
  c.tydiqa.n_shot = 3  # train examples per language in the prompt
  c.tydiqa.max_per_language = 200  # dev questions per language (sampled with seed 42)
  c.tydiqa.max_context_tokens = 512  # passages are cut to this many tokens
  c.tydiqa.max_new_tokens = 50  # greedy generation length
  c.tydiqa.batch_size = 8  # prompts decoded together

  c.humaneval = ml_collections.ConfigDict()
  c.humaneval.num_samples = 20  # completions per problem (n of pass@k)
  c.humaneval.temperature = 0.8  # sampling temperature
  c.humaneval.top_p = 0.95  # nucleus sampling mass
  c.humaneval.max_new_tokens = 512  # completion length before the stop sequences cut it
  c.humaneval.ks = (1, 10)  # pass@k reported for each k <= num_samples
  c.humaneval.timeout_s = 3.0  # wall-clock limit of one test program
  c.humaneval.memory_mb = 1024  # address-space limit of one test program
  c.humaneval.workers = 4  # test programs run at once
  c.humaneval.batch_size = 8  # prompts decoded together

  c.synthetic = ml_collections.ConfigDict()
  c.synthetic.max_new_tokens = 64  # greedy generation length for exact match
  c.synthetic.batch_size = 16  # rows per loss batch and per decoding batch
  c.lock()
  return c
