"""Channel codes (渠道活码) and what happens when a customer scans one: the welcome, attribution, tags, QR images."""
