"""The five tasks as data: their manifest, loading and validating pairs, importing task files, published
reference tables."""
