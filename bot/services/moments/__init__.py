"""Customer moments (客户朋友圈): compose and approve a corp moment, then have WeCom ask members to post it."""
