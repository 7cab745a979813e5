"""Decoding on llama.cpp and everything about model files: manifest, fetching, GGUF checks."""
