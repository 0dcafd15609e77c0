"""The model side: the decoder, LoRA adapters, decoding, tokenizers and
checkpoint formats in and out (Hugging Face, GGUF)."""
