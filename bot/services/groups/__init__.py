"""Customer groups (客户群): the mirror, group-join codes and invitations by tag (标签拉群)."""
