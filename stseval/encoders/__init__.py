"""Texts to vectors: loading encoders, poolings over hidden states, inference backends, the on-disk vector cache."""
