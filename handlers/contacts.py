"""change_external_contact: customers arriving, changing and leaving."""

from __future__ import annotations

from bot.services.callbacks.processing import Handler
from bot.services.callbacks.readahead import Read
from bot.services.channels import acquisition
from bot.services.customers import deletions, transfers
from bot.services.customers import relations as customers
from bot.services.handover import takeovers
from bot.wecom.events import Event, ExternalContactEvent


def on_external_contact_added(event: Event) -> str | None:
    assert isinstance(event, ExternalContactEvent)
    _, welcome = acquisition.customer_added(
        event.external_user_id, event.user_id, event.state, event.welcome_code, confirmed=True
    )
    return f"welcome {welcome.value}" if welcome else None


def on_external_contact_half_added(event: Event) -> str | None:
    """A skip-verify add not yet confirmed; its welcome code is the one to use (add_external_contact
    will then come without one)."""
    assert isinstance(event, ExternalContactEvent)
    _, welcome = acquisition.customer_added(
        event.external_user_id, event.user_id, event.state, event.welcome_code, confirmed=False
    )
    return f"welcome {welcome.value}" if welcome else None


def on_archiving_approved(event: Event) -> str | None:
    """The customer agreed to chat archiving (会话存档): the welcome code it carries welcomes them."""
    assert isinstance(event, ExternalContactEvent)
    _, welcome = acquisition.archiving_approved(event.external_user_id, event.user_id, event.welcome_code)
    return f"welcome {welcome.value}" if welcome else None


def on_external_contact_edited(event: Event) -> str | None:
    assert isinstance(event, ExternalContactEvent)
    customers.record_customer_edited(event.external_user_id, event.user_id)
    return None


def on_external_contact_deleted(event: Event) -> str | None:
    """The member deleted the customer (删人提醒 to the store managers), or 在职继承 moved them
    (Source=DELETE_BY_TRANSFER): a transfer, not a loss."""
    assert isinstance(event, ExternalContactEvent)
    if event.source == "DELETE_BY_TRANSFER":
        transfers.record_transferred_away(event.external_user_id, event.user_id)
        return "transferred"
    deletions.member_deleted_customer(event.external_user_id, event.user_id)
    return None


def on_follow_user_deleted(event: Event) -> str | None:
    """The customer deleted the member: a loss (流失), and an alert to the member."""
    assert isinstance(event, ExternalContactEvent)
    acquisition.customer_lost(event.external_user_id, event.user_id)
    return None


def on_transfer_failed(event: Event) -> str | None:
    assert isinstance(event, ExternalContactEvent)
    takeovers.transfer_failed(event.external_user_id, event.user_id, event.fail_reason)
    return None


HANDLERS: dict[str, Handler] = {
    "change_external_contact.add_external_contact": on_external_contact_added,
    "change_external_contact.add_half_external_contact": on_external_contact_half_added,
    "change_external_contact.edit_external_contact": on_external_contact_edited,
    "change_external_contact.del_external_contact": on_external_contact_deleted,
    "change_external_contact.del_follow_user": on_follow_user_deleted,
    "change_external_contact.transfer_fail": on_transfer_failed,
    "change_external_contact.msg_audit_approved": on_archiving_approved,
}


def reads_customer(event: Event) -> list[Read]:
    """Adds and edits read the customer from WeCom (an approval reads it only when its add is not processed
    yet; a loss or a transfer reads nothing)."""
    assert isinstance(event, ExternalContactEvent)
    return [customers.customer_read(event.external_user_id)]


#: what each kind reads from WeCom while it is handled, read ahead for a batch of events
READS = {
    "change_external_contact.add_external_contact": reads_customer,
    "change_external_contact.add_half_external_contact": reads_customer,
    "change_external_contact.edit_external_contact": reads_customer,
}
