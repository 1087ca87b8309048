"""cleanGPT: a plugin-based framework for research on GPT-style language models.

This package imports nothing heavy on purpose: the CLI and plugin discovery must start without torch.
"""

__version__ = "0.1.0"
