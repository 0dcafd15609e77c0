"""Evaluation harness: the paper's benchmarks with open-instruct protocols.

Modules: `sandbox` (contained execution of generated programs), `metrics`
(SQuAD F1/EM, last-number exact match, unbiased pass@k), `lm` (batched,
jitted next-token scoring and generation over text prompts), one module per
benchmark (`mmlu`, `gsm8k`, `tydiqa`, `humaneval`, `synthetic`) and `runner`
(which benchmarks to run, and the JSON of results).

Every evaluator is a library function
`evaluate(model_config, params, tokenizer, data_dir, cfg, *, limit=None)`
taking base parameters or parameters with unmerged LoRA adapters.
"""
