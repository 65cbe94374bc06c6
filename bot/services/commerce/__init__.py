"""The brand's own data: memberships and orders from its systems, matched to WeCom customers, attributed
to members and channels, and summed up per customer (level, spend, RFM)."""
