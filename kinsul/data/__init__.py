"""Generated datasets: robot demonstrations and VLM question answering, as Hugging Face datasets on disk
(`store` generates, caches and loads them; `robot`, `vlm` generate; `atomic` writes folders whole), the FAST
tokenizer fitted per dataset (`fast_cache`), in-memory tensors (`tensors`), the typed batch contract
(`batch`) and the resumable batch streams (`streams`)."""
