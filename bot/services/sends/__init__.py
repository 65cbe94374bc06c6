"""Mass sends (群发): compose and approve, dispatch to WeCom, follow delivery, and the attachments they carry."""
