"""ssrtune: fine-tune language models with Selective Self-Rehearsal (arXiv 2409.04787)."""

__version__ = "0.1.0"
