"""Serialization: column codecs, and rows as GReaT-style text and token ids."""
