"""Staff handover (离职继承): a leaver's customers and groups given to a receiver, exactly once."""
