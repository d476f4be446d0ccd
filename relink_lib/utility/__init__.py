"""Utility of the embeddings: image-side linear probe, zero-shot label AUROC, label-level retrieval."""
