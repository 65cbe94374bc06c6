"""The staff workspace: what a member sees and does in their WeCom client — the chat sidebar beside a customer
or a group, and the app's home — identified by WeCom OAuth, never by a panel account."""
