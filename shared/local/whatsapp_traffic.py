"""A deterministic day of WhatsApp Business Platform traffic, as Meta's webhooks would deliver it.

The ``demo --source whatsapp-cloud`` run and its tests feed on this: the bodies Meta would POST
for a small firm's three business numbers in one day, every message type of the reference (§3,
including the Coexistence echoes, edits, revokes and a history chunk of §5), the statuses of the
firm's own API sends (§4) and those sends themselves (what the firm's application would post to
``whatsapp_outbound``), the media Meta would serve for each media id, two malformed bodies that
are still validly signed, and the mapping CSV and directory an administrator would set up.

Same anchor and seed give byte-identical bodies, so a second run is pure redelivery. Every
number, id and name is fictitious (numbers in the +1 555 010 and +44 7700 900 ranges).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.domain.window import utc
from shared.local import whatsapp_bodies as wb
from shared.local.traffic.media import MEDIA_MAGIC
from shared.local.traffic.roster import DOMAIN

_MINUTE = 60



@dataclass(frozen=True)
class BusinessNumber:
    """A business number of the firm: an employee's, mapped to their mailbox through the CSV."""

    key: str
    name: str
    display: str  # metadata.display_phone_number: digits, no "+"
    phone_number_id: str
    waba_id: str
    mailbox: str
    csv_phone: str  # as an administrator typed it into the mapping CSV
    coexistence: bool = False  # also on the WhatsApp Business app: echoes, edits, revokes, history

    def metadata(self) -> dict[str, Any]:
        return wb.metadata(self.display, self.phone_number_id)


@dataclass(frozen=True)
class Customer:
    key: str
    name: str | None
    wa_id: str | None  # None: a username user whose number Meta leaves out
    user_id: str | None = None
    username: str | None = None

    def contact(self) -> dict[str, Any]:
        return wb.contact(self.wa_id, self.name, user_id=self.user_id, username=self.username)

    @property
    def address(self) -> str:
        """What a send request's ``to`` holds for this customer."""
        return self.wa_id or self.user_id or ""


@dataclass(frozen=True)
class MediaFile:
    """What Meta serves for one media id."""

    data: bytes
    mime_type: str
    sha256_base64: bool = False  # Meta's samples show the digest in either encoding
    expired: bool = False  # the id had lapsed by the time anyone asked for it

    def sha256(self) -> str:
        digest = hashlib.sha256(self.data).digest()
        return base64.b64encode(digest).decode() if self.sha256_base64 else digest.hex()


@dataclass(frozen=True)
class OutboundSend:
    """One send of the firm's application through the Cloud API: the request it POSTed to
    ``/{phone-number-id}/messages``, Meta's answer, and when. Meta's webhooks carry only its
    statuses, never its content."""

    wamid: str
    business: BusinessNumber
    sent_at: datetime
    request: dict[str, Any]
    response: dict[str, Any]

    def payload(self) -> dict[str, Any]:
        """The body ``whatsapp_outbound`` takes."""
        return {
            "wamid": self.wamid, "phone_number_id": self.business.phone_number_id,
            "display_phone_number": self.business.display, "sent_at": self.sent_at.isoformat().replace("+00:00", "Z"),
            "request": self.request, "response": self.response,
        }


@dataclass(frozen=True)
class WebhookBody:
    """One POST of Meta's: ``wire`` is what goes over the network, ``signed`` what the signature is
    computed over (Meta signs the escaped-Unicode form; the same bytes unless the body travels raw)."""

    label: str  # body-007: for logs and the delivery report, never content
    wire: bytes
    signed: bytes
    malformed: bool = False


@dataclass
class WhatsAppDay:
    anchor: datetime
    seed: int
    businesses: tuple[BusinessNumber, ...]
    customers: tuple[Customer, ...]
    bodies: list[WebhookBody]
    media: dict[str, MediaFile]
    outbound: list[OutboundSend]
    labels: dict[str, str]  # a name for each showcase message -> its wamid
    archived: dict[str, str]  # wamid of every message Meta delivers -> the mailbox it belongs in
    statuses: Counter[str] = field(default_factory=Counter)  # receipts sent, by status, each once

    @property
    def malformed(self) -> list[WebhookBody]:
        return [body for body in self.bodies if body.malformed]

    @property
    def expired_media(self) -> list[str]:
        return [media_id for media_id, media in self.media.items() if media.expired]

    def mapping_csv(self) -> str:
        """The phone → email CSV an administrator would upload: each business number is its employee's."""
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["PhoneNumber", "EmailAddress"])
        for business in self.businesses:
            writer.writerow([business.csv_phone, business.mailbox])
        return buffer.getvalue()

    def directory(self) -> list[str]:
        """Addresses that have an Exchange Online mailbox."""
        return sorted({b.mailbox for b in self.businesses} | {f"compliance@{DOMAIN}"})


def _businesses() -> tuple[BusinessNumber, ...]:
    return (
        BusinessNumber("harriet", "Harriet Cole", "447700900301", "106540000000301", "200000000000901",
                       f"harriet.cole@{DOMAIN}", "+44 7700 900301", coexistence=True),
        BusinessNumber("wei", "Wei Zhang", "15550100110", "106540000000110", "200000000000901",
                       f"wei.zhang@{DOMAIN}", "+1 (555) 010-0110"),
        BusinessNumber("omar", "Omar Haddad", "15550100120", "106540000000120", "200000000000902",
                       f"omar.haddad@{DOMAIN}", "+15550100120"),
    )


def _customers() -> tuple[Customer, ...]:
    return (
        Customer("maya", "Maya Fischer", "15550100142", user_id="US.MAYA000000000000142"),
        Customer("tomas", "Tomás Ortega", "447700900411"),
        Customer("ingrid", "Ingrid Sølberg", "447700900412"),
        Customer("kenji", "Kenji Watanabe 渡辺", "15550100143"),
        Customer("riverside", "Riverside Lettings", None, user_id="GB.RIVERSIDE00000007",
                 username="riverside_lettings"),
        Customer("amara", "Amara Okafor", "447700900413"),
        Customer("lucas", "Lucas Moreau", "15550100144"),
        Customer("noor", "Noor Rahman", "447700900415"),
        Customer("pablo", "Pablo Ruiz", "15550100146"),
    )


_CHATTER = (
    "Morning — any news on the allocation?", "Thanks, received.", "Can you call me after 3?",
    "Still waiting on the signed copy.", "Perfect, go ahead.", "What's the settlement date?",
    "I'll check with my accountant and revert.", "Is the rate fixed or variable?", "👍 sounds good",
    "Could you resend the last statement?", "On my way to the office, 10 min.", "Let's hold until Monday.",
)
_REPLIES = (
    "Good morning! I'll send it over shortly.", "Confirmed on our side.", "Yes — 15:30 works.",
    "The desk is looking into it now.", "Settlement is T+2.", "I've forwarded it to operations.",
)


class _Day:
    """Builds the day: updates (one change each, with Meta's time), then packs them into bodies."""

    def __init__(self, anchor: datetime, seed: int) -> None:
        self.anchor = utc(anchor)
        self.start = int((self.anchor - timedelta(hours=24)).timestamp())
        self.rng = random.Random(seed)
        self.seed = seed
        self.b = {business.key: business for business in _businesses()}
        self.c = {customer.key: customer for customer in _customers()}
        self.updates: list[tuple[int, int, str, dict[str, Any]]] = []  # (at, order, waba, change)
        self.media: dict[str, MediaFile] = {}
        self.outbound: list[OutboundSend] = []
        self.labels: dict[str, str] = {}
        self.archived: dict[str, str] = {}
        self.statuses: Counter[str] = Counter()

    # -- ids and times ----------------------------------------------------------------------------
    def at(self, hour: float) -> int:
        """Unix seconds, ``hour`` hours into the day (0 to 24), a few seconds of jitter."""
        return self.start + int(hour * 3600) + self.rng.randrange(0, 50)

    def wamid(self, counterpart: str) -> str:
        """Meta's form: ``wamid.`` and the base64 of a small envelope holding the counterpart's
        number and a random id."""
        digits = counterpart.encode()
        tail = f"{self.rng.getrandbits(80):020X}".encode()
        inner = b"\x18" + bytes([len(digits)]) + digits + b"\x15\x02\x00\x12\x18\x14" + tail + b"\x00"
        return "wamid." + base64.b64encode(inner).decode()

    def media_id(self) -> str:
        return str(self.rng.randrange(10**15, 10**16))

    def new_media(self, mime: str, low: int = 2048, high: int = 24 * 1024, *, expired: bool = False) -> str:
        media_id = self.media_id()
        size = self.rng.randrange(low, high)
        magic = MEDIA_MAGIC.get(mime, b"")
        data = magic + self.rng.randbytes(size - len(magic))
        self.media[media_id] = MediaFile(data, mime, sha256_base64=self.rng.random() < 0.5, expired=expired)
        return media_id

    def media_object(self, mime: str, *, expired: bool = False, **extra: Any) -> dict[str, Any]:
        media_id = self.new_media(mime, expired=expired)
        stored = self.media[media_id]
        link = f"https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid={media_id}"
        return wb.media(media_id, mime, sha256=stored.sha256(), url=link, **extra)

    # -- updates ----------------------------------------------------------------------------------
    def update(self, at: int, business: BusinessNumber, field: str, value: dict[str, Any]) -> None:
        self.updates.append((at, len(self.updates), business.waba_id, wb.change(value, field)))

    def archive(self, message_id: str, business: BusinessNumber, label: str | None) -> str:
        self.archived[message_id] = business.mailbox
        if label:
            self.labels[label] = message_id
        return message_id

    def inbound(self, business: str, customer: str, kind: str, content: Any, hour: float, *,
                label: str | None = None, contacts: bool = True, **extra: Any) -> str:
        [message_id] = self.burst(business, customer, [(kind, content, extra)], hour, labels=[label],
                                  contacts=contacts)
        return message_id

    def burst(self, business: str, customer: str, items: list[tuple[str, Any, dict[str, Any]]], hour: float, *,
              labels: list[str | None] | None = None, contacts: bool = True) -> list[str]:
        """What a customer sends within seconds: Meta puts it in one change."""
        biz, cust = self.b[business], self.c[customer]
        at = self.at(hour)
        messages, ids = [], []
        for n, (kind, content, extra) in enumerate(items):
            message_id = self.wamid(cust.address)
            more = {"from_user_id": cust.user_id} if cust.user_id is not None else {}
            messages.append(wb.message(kind, content, message_id=message_id, at=at + 3 * n, sender=cust.wa_id,
                                       **more, **extra))
            ids.append(self.archive(message_id, biz, labels[n] if labels else None))
        value = wb.value(biz.metadata(), messages=messages, contacts=[cust.contact()] if contacts else None)
        self.update(at, biz, "messages", value)
        return ids

    def echo(self, business: str, customer: str, kind: str, content: Any, hour: float, *,
             label: str | None = None, **extra: Any) -> str:
        biz, cust = self.b[business], self.c[customer]
        message_id = self.wamid(cust.address)
        if cust.user_id is not None:
            extra.setdefault("to_user_id", cust.user_id)
        item = wb.echo(kind, content, message_id=message_id, at=self.at(hour), business=biz.display,
                       to=cust.address, **extra)
        value = wb.value(biz.metadata(), echoes=[item], contacts=[cust.contact()])
        self.update(int(item["timestamp"]), biz, "smb_message_echoes", value)
        return self.archive(message_id, biz, label)

    def send(self, business: str, to: str, kind: str, content: dict[str, Any], hour: float, *,
             receipts: tuple[str, ...] = ("sent", "delivered", "read"), label: str | None = None,
             group: bool = False, errors: list[dict[str, Any]] | None = None, category: str = "service",
             ) -> str:
        """A send through the Cloud API by the firm's application: the request and Meta's answer
        (for whatsapp_outbound), then the receipts Meta's webhooks carry for it."""
        biz = self.b[business]
        cust = None if group else self.c[to]
        address = to if group else cust.address  # type: ignore[union-attr]
        message_id = self.wamid(address)
        sent = self.at(hour)
        request: dict[str, Any] = {"messaging_product": "whatsapp",
                                   "recipient_type": "group" if group else "individual",
                                   "to": address, "type": kind, kind: content,
                                   "biz_opaque_callback_data": f"crm-{len(self.outbound) + 1:04d}"}
        response: dict[str, Any] = {"messaging_product": "whatsapp",
                                    "messages": [{"id": message_id, **({"message_status": "accepted"}
                                                                        if kind == "template" else {})}]}
        if cust is not None and cust.wa_id:
            response["contacts"] = [{"input": address, "wa_id": cust.wa_id}]
        self.outbound.append(OutboundSend(message_id, biz, datetime.fromtimestamp(sent, UTC), request, response))
        if label:
            self.labels[label] = message_id
        pricing = {"billable": category != "service", "pricing_model": "PMP",
                   "type": "regular" if category != "service" else "free_customer_service", "category": category}
        after = sent
        for state in receipts:
            after += self.rng.randrange(2, 40 * _MINUTE if state in ("read", "played") else 90)
            extra: dict[str, Any] = {"biz_opaque_callback_data": request["biz_opaque_callback_data"]}
            if state in ("sent", "delivered"):
                extra["pricing"] = pricing
            if state == "failed":
                extra["errors"] = errors or []
            if group:
                extra["recipient_type"] = "group"
                if state in ("delivered", "read"):
                    extra["recipient_participant_id"] = self.c["noor"].wa_id
            elif cust is not None and cust.user_id:
                extra["recipient_user_id"] = cust.user_id
            receipt = wb.status(message_id, state, at=after, recipient=address, **extra)
            self.update(after, biz, "messages", wb.value(biz.metadata(), statuses=[receipt]))
            self.statuses[state] += 1
        return message_id


def generate_whatsapp_day(anchor: datetime, *, seed: int = 15) -> WhatsAppDay:
    """The day's webhook bodies for the 24 hours before ``anchor``, in the order Meta sends them."""
    d = _Day(anchor, seed)
    _showcase(d)
    _coexistence(d)
    _chatter(d, 36)
    bodies = _pack(d)
    _insert_malformed(d, bodies)
    return WhatsAppDay(
        anchor=d.anchor, seed=seed, businesses=tuple(d.b.values()), customers=tuple(d.c.values()), bodies=bodies,
        media=d.media, outbound=d.outbound, labels=d.labels, archived=d.archived, statuses=d.statuses,
    )


def _showcase(d: _Day) -> None:
    """Every type of §3 once at least, on the firm's numbers, in the order a day would bring them."""
    # The firm's API sends the customers answer: a text, a template, interactive messages, a voice note.
    term_sheet = d.send("harriet", "maya", "text",
                        {"preview_url": False, "body": "Here is the term sheet we discussed."}, 8.0, label="send_text")
    template = d.send("wei", "kenji", "template", {
        "name": "trade_confirmation", "language": {"code": "en_GB"}, "components": [
            {"type": "body", "parameters": [{"type": "text", "text": "100 XYZ @ 12.50"}]},
            {"type": "button", "sub_type": "quick_reply", "index": "0",
             "parameters": [{"type": "payload", "payload": "CONFIRM-7731"}]}]},
        8.2, label="send_template", category="utility")
    buttons = d.send("harriet", "maya", "interactive", {
        "type": "button", "body": {"text": "Shall I place the order?"}, "action": {"buttons": [
            {"type": "reply", "reply": {"id": "confirm-yes", "title": "Yes, confirm"}},
            {"type": "reply", "reply": {"id": "confirm-no", "title": "Not yet"}}]}}, 9.0, label="send_buttons")
    slots = d.send("wei", "kenji", "interactive", {
        "type": "list", "body": {"text": "When suits you for a call?"},
        "action": {"button": "Pick a slot", "sections": [
            {"title": "This week", "rows": [{"id": "slot-1", "title": "Monday 15:00"},
                                            {"id": "slot-2", "title": "Tuesday 10:00",
                                             "description": "Call with the desk"}]}]}}, 9.3, label="send_list")
    flow = d.send("omar", "tomas", "interactive", {
        "type": "flow", "body": {"text": "Tell us your risk profile"}, "action": {"name": "flow", "parameters": {
            "flow_message_version": "3", "flow_token": "tok-77", "flow_id": "1234567890", "flow_cta": "Start",
            "flow_action": "navigate"}}}, 9.5, label="send_flow")
    # A voice note the firm uploaded before sending it (uploaded media ids last 30 days).
    voice_note = d.send("harriet", "ingrid", "audio", {"id": d.new_media("audio/ogg; codecs=opus")}, 10.0,
                        receipts=("sent", "delivered", "played"), label="send_voice")
    d.send("omar", "amara", "template", {"name": "spring_offer", "language": {"code": "en_GB"}}, 10.5,
           receipts=("sent", "failed"), category="marketing", label="send_failed_marketing", errors=[{
               "code": 131050, "title": "Unable to deliver the message. This recipient has chosen to stop "
                                        "receiving marketing messages on WhatsApp from your business.",
               "message": "Unable to deliver the message.", "error_data": {"details": "Recipient opted out."},
               "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"}])
    d.send("wei", "pablo", "text", {"body": "Reminder: your statement is ready."}, 11.0,
           receipts=("failed",), label="send_failed_ecosystem", errors=[{
               "code": 131049, "title": "This message was not delivered to maintain healthy ecosystem engagement.",
               "message": "This message was not delivered to maintain healthy ecosystem engagement.",
               "error_data": {"details": "In order to maintain a healthy ecosystem engagement, the message failed "
                                         "to be delivered."}}])
    group = "120363041234567890"
    d.send("wei", group, "text", {"body": "Desk update: markets open in 10 minutes."}, 7.9, group=True,
           label="send_group")

    # What the customers send.
    d.inbound("harriet", "maya", "text", wb.text("Morning Harriet — can we go over the bond ladder?"), 8.5,
              label="text")
    d.inbound("harriet", "maya", "text", wb.text("Thanks, reading it now."), 8.6, label="reply",
              context={"from": "447700900301", "id": term_sheet})
    d.inbound("harriet", "maya", "interactive", wb.button_reply(), 9.1, label="interactive_button",
              context={"from": "447700900301", "id": buttons})
    d.inbound("wei", "kenji", "button", {"payload": "CONFIRM-7731", "text": "Confirm"}, 8.4, label="template_button",
              context={"from": "15550100110", "id": template})
    d.inbound("wei", "kenji", "interactive", wb.list_reply(), 9.4, label="interactive_list",
              context={"from": "15550100110", "id": slots})
    d.inbound("omar", "tomas", "interactive", wb.flow_reply(), 9.7, label="interactive_flow",
              context={"from": "15550100120", "id": flow})
    d.inbound("harriet", "maya", "reaction", {"message_id": term_sheet, "emoji": "👍"}, 8.7, label="reaction")
    d.inbound("harriet", "maya", "reaction", {"message_id": term_sheet}, 8.8, label="reaction_removed")
    d.inbound("harriet", "tomas", "image", d.media_object("image/jpeg", caption="Signed page 3"), 11.2,
              label="image", context={"forwarded": True})
    d.inbound("omar", "tomas", "video", d.media_object("video/mp4", caption="Site visit"), 11.4, label="video",
              context={"frequently_forwarded": True})
    d.inbound("omar", "tomas", "audio", d.media_object("audio/mpeg", voice=False), 11.6, label="audio")
    d.inbound("harriet", "ingrid", "audio", d.media_object("audio/ogg; codecs=opus", voice=True), 10.4,
              label="voice", context={"from": "447700900301", "id": voice_note})
    d.inbound("omar", "tomas", "document", d.media_object("application/pdf", filename="Passport scan — T Ortega.pdf",
                                                           caption="As requested"), 12.0, label="document")
    d.burst("omar", "tomas", [("text", wb.text("Sending the documents now."), {}),
                              ("text", wb.text("Two files, the second one is the signed page."), {})], 11.9)
    d.inbound("wei", "kenji", "sticker", d.media_object("image/webp", animated=False), 12.2, label="sticker")
    d.inbound("wei", "kenji", "location", wb.location(), 12.5, label="location")
    d.inbound("omar", "tomas", "contacts", [wb.contact_card()], 12.8, label="contacts")
    d.inbound("omar", "lucas", "order", wb.order(), 13.0, label="order")
    d.inbound("omar", "lucas", "text", wb.text("Is this still available?"), 13.1, label="product_enquiry",
              context={"from": "15550100120", "id": d.wamid("15550100144"),
                       "referred_product": {"catalog_id": "cat-900", "product_retailer_id": "sku-1"}})
    d.inbound("omar", "lucas", "text", wb.text("Hi, I saw your ad about the savings account."), 13.5,
              label="ad_referral", referral=wb.referral())
    d.inbound("omar", "amara", "system", {"body": "User Amara Okafor changed from 447700900413 to 447700900414",
                                          "type": "user_changed_number", "wa_id": "447700900414"},
              14.0, label="system", contacts=False)
    d.inbound("wei", "kenji", "unsupported", {"type": "poll"}, 14.5, label="unsupported",
              errors=[wb.meta_error()])
    d.inbound("wei", "pablo", "unknown", None, 14.7, label="unknown",
              errors=[wb.meta_error(131051, "Unsupported message type")])
    d.inbound("wei", "noor", "text", wb.text("Can the group see the new rates sheet?"), 8.1, label="group",
              group_id=group)
    d.inbound("harriet", "riverside", "text", wb.text("Hello, we'd like to open a client account."), 15.0,
              label="username_user")
    d.inbound("harriet", "maya", "image", d.media_object("image/jpeg", expired=True, caption="Old statement"), 15.5,
              label="image_expired")


def _coexistence(d: _Day) -> None:
    """Harriet's number is on the WhatsApp Business app too: what she types there (echoes), the
    customer's edit and revoke, her own edit and revoke, and a chunk of the chat history."""
    question = d.inbound("harriet", "maya", "text", wb.text("Can you do 200 instead of 100?"), 16.0,
                         label="text_to_edit")
    d.inbound("harriet", "maya", "edit", {"original_message_id": question, "message": {
        "type": "text", "text": {"body": "Can you do 250 instead of 100?"}}}, 16.05, label="edit")
    oops = d.inbound("harriet", "maya", "text", wb.text("Wrong chat, sorry"), 16.2, label="text_to_revoke")
    d.inbound("harriet", "maya", "revoke", {"original_message_id": oops}, 16.21, label="revoke")
    answer = d.echo("harriet", "maya", "text", wb.text("Yes, 250 is fine — booking it now."), 16.3, label="echo_text",
                    context={"from": "15550100142", "id": question})
    d.echo("harriet", "maya", "image", d.media_object("image/jpeg", caption="Booking confirmation"), 16.4,
           label="echo_image")
    d.echo("harriet", "maya", "edit", {"original_message_id": answer, "message": {
        "type": "text", "text": {"body": "Yes, 250 is fine — booked."}}}, 16.45, label="echo_edit")
    slip = d.echo("harriet", "ingrid", "text", wb.text("Dinner at 8?"), 16.6, label="echo_to_revoke")
    d.echo("harriet", "ingrid", "revoke", {"original_message_id": slip}, 16.61, label="echo_revoke")

    # The history backfill: an older thread with Ingrid, her message and Harriet's answer, then a
    # photo of hers as a placeholder; the photo is recent enough (14 days) for Meta to send its file
    # afterwards, under the same wamid.
    biz, ingrid = d.b["harriet"], d.c["ingrid"]
    old = d.start - 40 * 24 * 3600
    messages = []
    for n, (sender, words) in enumerate(((ingrid.wa_id, "Could you look at my pension transfer?"),
                                         (biz.display, "Of course — send me the statement."))):
        message_id = d.archive(d.wamid(ingrid.address), biz, f"history_text_{n}")
        item = wb.message("text", wb.text(words), message_id=message_id, at=old + 600 * n, sender=sender,
                          history_context={"status": "READ"})
        if sender == biz.display:
            item["to"] = ingrid.wa_id
        messages.append(item)
    photo_id, photo_at = d.wamid(ingrid.address), d.start - 10 * 24 * 3600
    messages.append(wb.message("media_placeholder", {}, message_id=photo_id, at=photo_at, sender=ingrid.wa_id,
                               history_context={"status": "DELIVERED"}))
    # The parser gives a placeholder an id of its own, so that the file is archived beside it.
    d.archive(f"{photo_id}:media_placeholder", biz, "history_media_placeholder")
    chunk = wb.history_chunk(wb.thread(ingrid.address, *messages), phase=1, chunk_order=3, progress=55)
    d.update(d.at(17.0), biz, "history", wb.value(biz.metadata(), history=[chunk]))
    photo = wb.message("image", d.media_object("image/jpeg", caption="Statement, page 1"), message_id=photo_id,
                       at=photo_at, sender=ingrid.wa_id)
    d.update(d.at(17.1), biz, "history", wb.value(biz.metadata(), messages=[photo], contacts=[ingrid.contact()]))
    d.archive(photo_id, biz, "history_media")


def _chatter(d: _Day, count: int) -> None:
    """The rest of the day: short exchanges, some with a photo, across the three numbers."""
    pairs = [("harriet", "maya"), ("harriet", "ingrid"), ("wei", "kenji"), ("wei", "noor"), ("omar", "tomas"),
             ("omar", "lucas"), ("omar", "amara"), ("wei", "pablo")]
    for n in range(count):
        business, customer = d.rng.choice(pairs)
        hour = 7 + 15 * n / count
        roll = d.rng.random()
        if roll < 0.45:
            d.inbound(business, customer, "text", wb.text(d.rng.choice(_CHATTER)), hour)
        elif roll < 0.55:
            d.inbound(business, customer, "image", d.media_object("image/jpeg"), hour)
        elif roll < 0.75 and d.b[business].coexistence:
            d.echo(business, customer, "text", wb.text(d.rng.choice(_REPLIES)), hour)
        else:
            d.send(business, customer, "text", {"body": d.rng.choice(_REPLIES)}, hour)


def _pack(d: _Day) -> list[WebhookBody]:
    """Updates into bodies as Meta batches them: most alone, some several messages to a change,
    several changes to an entry or several entries to a body, never out of Meta's hands in a
    different order than it made them."""
    updates = sorted(d.updates, key=lambda u: (u[0], u[1]))
    grouped: list[list[tuple[str, dict[str, Any]]]] = []
    last_at = None
    for at, _, waba, change in updates:
        close = last_at is not None and at - last_at <= 120
        if grouped and close and d.rng.random() < 0.5 and len(grouped[-1]) < 6:
            grouped[-1].append((waba, change))
        else:
            grouped.append([(waba, change)])
        last_at = at
    bodies: list[WebhookBody] = []
    raw_once = False
    for group in grouped:
        entries: list[dict[str, Any]] = []
        for waba, change in group:
            previous = entries[-1] if entries else None
            if previous is not None and previous["id"] == waba and _merged(previous["changes"][-1], change):
                continue
            if previous is not None and previous["id"] == waba:
                previous["changes"].append(change)
            else:
                entries.append(wb.entry(change, waba_id=waba))
        envelope = wb.envelope(*entries)
        signed = wb.meta_json(envelope)
        wire = signed
        if not raw_once and b"\\u" in signed:
            # One body travels with raw UTF-8 (as a proxy may re-encode it), still signed over
            # the escaped form: the receiver's fallback (webhook_auth) must take it.
            wire = wb.meta_json(envelope, escape_non_ascii=False)
            raw_once = True
        bodies.append(WebhookBody(f"body-{len(bodies) + 1:03d}", wire, signed))
    return bodies


def _merged(into: dict[str, Any], change: dict[str, Any]) -> bool:
    """Several messages (or statuses) of one number in one change, as Meta sends a burst: only
    when both changes are of the same field and number and hold nothing but messages or statuses."""
    a, b = into["value"], change["value"]
    if into["field"] != change["field"] or a["metadata"] != b["metadata"]:
        return False
    kinds = {"messaging_product", "metadata", "contacts", "messages", "statuses"}
    if set(a) - kinds or set(b) - kinds:
        return False
    for key in ("messages", "statuses"):
        if key in b:
            a.setdefault(key, []).extend(b[key])
    known = {(c.get("wa_id"), c.get("user_id")) for c in a.get("contacts", [])}
    for contact in b.get("contacts", []):
        if (contact.get("wa_id"), contact.get("user_id")) not in known:
            a.setdefault("contacts", []).append(contact)
    return True


def _insert_malformed(d: _Day, bodies: list[WebhookBody]) -> None:
    """Two bodies that are validly signed but no WhatsApp webhook: one cut short by a proxy (not
    JSON), one a Messenger Page event of the same Meta app (not a WhatsApp envelope). The
    connector must keep both and poison them ``invalid_item``."""
    cut = wb.meta_json(wb.envelope(wb.entry(wb.change(wb.value(d.b["wei"].metadata(), statuses=[])),
                                            waba_id=d.b["wei"].waba_id)))[:57]
    page = wb.meta_json(wb.envelope({"id": "109000000000001", "time": d.start + 3600,
                                     "messaging": [{"sender": {"id": "7000000000000001"},
                                                    "recipient": {"id": "109000000000001"},
                                                    "timestamp": (d.start + 3600) * 1000,
                                                    "message": {"mid": "m_TEST0001", "text": "hi"}}]},
                                    object_="page"))
    for position, data in ((len(bodies) // 3, cut), (2 * len(bodies) // 3, page)):
        bodies.insert(position, WebhookBody("", data, data, malformed=True))
    for n, body in enumerate(bodies, 1):
        bodies[n - 1] = WebhookBody(f"body-{n:03d}", body.wire, body.signed, body.malformed)
