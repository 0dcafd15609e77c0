"""Evaluation harness: the paper's benchmarks with open-instruct protocols.

Modules: `sandbox` (+ `sandbox_child`: contained execution of generated
programs), `metrics` (SQuAD F1/EM, last-number exact match, unbiased pass@k),
`lm` (batched, bucketed, jitted next-token scoring and generation over token
prompts), one module per benchmark (`mmlu`, `gsm8k`, `tydiqa`, `humaneval`,
`synthetic`), `runner` (the configured benchmarks -> one report) and
`checkpoints` (what to evaluate: a LEAD workdir, a Hugging Face directory or
a GGUF file).

Every evaluator is a library function
`evaluate(model_config, params, tokenizer, <data>, cfg, *, [template,] key, limit)`
where `cfg` is its sub-config (configs/base_eval.py) and `params` is
`{"params": base}` or `{"params": base, "lora": adapters}` (unmerged; the
ModelConfig then carries `lora`). Chat-format benchmarks take the data
layer's chat template, so prompts are tokenised exactly as in training.
"""
