"""stseval: sentence-embedding evaluation on the five Chinese STS tasks, with BERT-whitening and SimCSE."""

__version__ = "0.1.0"
