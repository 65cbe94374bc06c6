"""The corp tag library mirrored from WeCom, and bulk tagging."""
