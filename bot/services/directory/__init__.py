"""The staff directory: WeCom departments are stores, members are staff."""
