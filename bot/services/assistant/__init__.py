"""The assistant members talk to in their WeCom client, and the daily digest it sends store managers."""
