"""cleanGPT: a plugin-based framework for research on GPT-style language models.

This package imports nothing heavy on purpose: the CLI and plugin discovery must start without torch.
"""

__version__ = "0.1.0"

from cleangpt_core import compat

compat.install()  # earlier releases' module paths and names keep importing (see compat)
