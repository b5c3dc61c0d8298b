"""What improves or serves the vectors: BERT-whitening, unsupervised SimCSE (with its row-sparse Adam), FAISS
indexes."""
