"""Callbacks: the inbox that stores each verified callback before WeCom gets its 200, and processing each
stored event exactly once."""
