"""Trainable toy transformers and their synthetic tasks, where ICL can be watched as it forms."""
