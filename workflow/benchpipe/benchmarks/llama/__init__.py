"""llama2_70b_lora: LoRA fine-tuning of a Llama decoder (benchmark.py)."""
