"""Tokenizers: the world's closed text vocabulary, and FAST action tokens (DCT + quantise + BPE)."""
