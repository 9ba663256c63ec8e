"""Retention bundles (BagIt), package metadata, signatures, verifier, four-properties checks."""
