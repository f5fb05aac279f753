"""Entropy-regularized DeepGaze-style saliency: MIT1003/CAT2000 loaders, model, training, evaluation and go/no-go report.

Start with ``saliency-entropy demo --out DIR``; see the package README for the data formats and commands.
"""

__version__ = "0.4.0"
