"""Generated datasets: robot demonstrations and VLM question answering, as Hugging Face datasets on disk.

`kinsul.data.store` generates, caches and loads them.
"""
