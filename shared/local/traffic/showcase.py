"""The scripted conversations that hit every awkward corner the connector must survive (every
message type and event, late deliveries, right-to-left text, literal markup, hostile file names,
an attachment over the item size limit, media never captured, people who map through e-mail,
through the CSV, through both or not at all). Each appears once a day, whatever the scale."""

from __future__ import annotations

from shared.local.traffic.builder import DAY, HOUR, MINUTE, Chat, RecordBuilder
from shared.local.traffic.media import HUGE_ATTACHMENT_SIZE, LARGE_ATTACHMENT_SIZE
from shared.local.traffic.roster import Person


def showcase(b: RecordBuilder) -> None:
    p = b.p
    _customer_chat(b, p)
    _hebrew_chat(b, p)
    _project_group(b, p)
    _sales_group(b, p)
    _late_delivery(b, p)
    _unmapped(b, p)


def _customer_chat(b: RecordBuilder, p: dict[str, Person]) -> None:
    amelia, fatima = p["amelia"], p["fatima"]
    chat = Chat(amelia, (amelia, fatima))
    t = b.clock()
    hello = b.record(chat, fatima, t(), text="مرحبا أميليا، هل وصلت الشحنة؟ 📦", label="rtl_arabic")
    b.record(chat, amelia, t(), text="Yes — arrived this morning ✅", reply_to=hello, label="reply")
    photo = b.record(chat, fatima, t(), message_type="IMAGE", text="صورة الفاتورة",
                     attachments=[b.small("jpeg", 18 * 1024, 40 * 1024)], label="inline_image")
    b.reaction(chat, amelia, t(), photo, "❤️", label="reaction")
    b.reaction(chat, amelia, t(), photo, "", label="reaction_removed")
    b.record(chat, fatima, t(), message_type="DOCUMENT", text=None,
             attachments=[b.attachment("pdf", 640 * 1024 + 17, file_name="../../etc/x.pdf")],
             label="path_file_name")
    b.record(chat, fatima, t(), message_type="LOCATION",
             location={"latitude": 51.50330, "longitude": -0.11960, "name": "County Hall",
                       "address": "Westminster Bridge Rd, London SE1 7PB"}, label="location")
    original = b.record(chat, amelia, t(), text="Delivery on Tuesday at 9", label="edit_original")
    b.edit(chat, original, t(), "Delivery on Wednesday at 9 (Tuesday is a bank holiday)", label="edited")
    b.call(chat, fatima, t(5 * MINUTE, 15 * MINUTE), "VOICE", "ANSWERED", duration=312,
           label="call_answered")
    b.record(chat, amelia, t(),
             text="Summary:\r\n- 40 units\r\n- delivery Wednesday\nThanks, Amelia", label="crlf_text")
    b.system(chat, fatima, t(), "SECURITY_CODE_CHANGED",
             "Your security code with Fatima Al-Saleh changed", label="system_security_code")


def _hebrew_chat(b: RecordBuilder, p: dict[str, Person]) -> None:
    jose, yael, kwame = p["jose"], p["yael"], p["kwame"]
    chat = Chat(jose, (jose, yael))
    t = b.clock()
    b.record(chat, yael, t(), text="שלום חוסה, מתי הפגישה?", label="rtl_hebrew")
    b.record(chat, jose, t(), text="<script>alert(1)</script> — that is what the form showed me 🙃",
             label="script_text")
    b.record(chat, jose, t(), text="Tom &amp; Jerry Ltd <b>invoice</b> &lt;draft&gt;", label="entity_text")
    b.record(chat, yael, t(), message_type="VOICE_NOTE",
             attachments=[b.small("opus", 8 * 1024, 30 * 1024)], label="voice_note")
    b.record(chat, jose, t(), message_type="AUDIO", text="Recording of the call",
             attachments=[b.attachment("mp3", 1_843_200 + b.rng.randint(0, 999))], label="audio")
    b.call(chat, yael, t(), "VOICE", "MISSED", label="call_missed")
    b.call(chat, yael, t(), "VIDEO", "REJECTED", label="call_rejected")
    b.call(chat, jose, t(2 * MINUTE, 10 * MINUTE), "VIDEO", "ANSWERED", duration=95, label="video_call")
    b.call(chat, jose, t(), "VOICE", "CANCELLED", label="call_cancelled")
    b.record(chat, yael, t(), message_type="CONTACT",
             contacts=[{"displayName": kwame.display_name, "phones": ["+1 202-555-0191"],
                        "emails": ["kwame@mensah-logistics.example"], "organization": "Mensah Logistics"}],
             label="contact")
    b.record(chat, jose, t(), message_type="STICKER", attachments=[b.small("sticker", 8 * 1024, 30 * 1024)],
             label="sticker")
    regret = b.record(chat, yael, t(), text="My personal account is 12-34-56 / 87654321")
    b.delete(chat, regret, yael, t(), "FOR_EVERYONE", repeat_content=True, label="deleted_for_everyone")
    # The original was sent (and deleted) before this day's window: only the deletion is here.
    b.delete(chat, None, yael, t(), "FOR_EVERYONE", repeat_content=False,
             related_id="3EB0" + b.rng.randbytes(8).hex().upper(), label="deleted_unknown_original")


def _project_group(b: RecordBuilder, p: dict[str, Person]) -> None:
    priya, amelia, siobhan, bjorn, unnamed = p["priya"], p["amelia"], p["siobhan"], p["bjorn"], p["unnamed"]
    members = (priya, amelia, siobhan, bjorn, unnamed)
    chat = Chat(priya, members, b.group_id(), "Aurora")
    t = b.clock(5 * HOUR)
    b.system(chat, priya, t(), "GROUP_CREATED", "Priya Raman created group \"Aurora\"",
             label="system_created")
    b.system(chat, priya, t(), "PARTICIPANT_ADDED", "Priya Raman added Björn Svensson",
             label="system_added")
    chat.group_name = "Project Aurora 🚀"
    b.system(chat, priya, t(), "SUBJECT_CHANGED",
             "Priya Raman changed the subject from \"Aurora\" to \"Project Aurora 🚀\"",
             label="system_subject")
    b.system(chat, siobhan, t(), "ICON_CHANGED", "Siobhán Ní Bhriain changed this group's icon",
             label="system_icon")
    kickoff = b.record(chat, priya, t(), text="Welcome all 👋 Kick-off notes to follow.", label="group_text")
    b.reaction(chat, bjorn, t(), kickoff, "👍", label="group_reaction")
    b.record(chat, siobhan, t(), message_type="IMAGE", text="Site photos",
             attachments=[b.small("jpeg"), b.small("jpeg")], label="album")
    b.record(chat, bjorn, t(), message_type="VIDEO", text="Walkthrough from the plant", forwarded=True,
             attachments=[b.attachment("mp4", LARGE_ATTACHMENT_SIZE + 4321)], label="large_attachment")
    b.record(chat, amelia, t(), message_type="VIDEO", text="Full drone footage (long!)",
             attachments=[b.attachment("mp4", HUGE_ATTACHMENT_SIZE)], label="huge_attachment")
    b.record(chat, siobhan, t(), message_type="DOCUMENT", text="Draft contract",
             attachments=[b.attachment("pdf", 210 * 1024 + 3, file_name="Contract\x1b[31m draft.pdf")],
             label="control_char_file_name")
    b.record(chat, bjorn, t(), message_type="DOCUMENT",
             attachments=[b.attachment("xlsx", 96 * 1024 + 11, file_name="")], label="empty_file_name")
    b.record(chat, unnamed, t(), message_type="IMAGE", text="photo of the meter",
             attachments=[b.attachment("jpeg", 734 * 1024 + 5, captured=False)], label="missing_media")
    quoted = b.record(chat, bjorn, t(), text="Budget is capped at €1.2m incl. VAT")
    b.record(chat, priya, t(), text="Noted — I'll reflect that in the plan", reply_to=quoted,
             label="group_reply")
    b.record(chat, siobhan, t(), text="FYI from the supplier: \"prices rise 4% from Q3\"", forwarded=True,
             label="forwarded_text")
    mine = b.record(chat, priya, t(), message_type="IMAGE", text="Wrong chat, sorry",
                    attachments=[b.small("jpeg")])
    b.delete(chat, mine, priya, t(), "FOR_ME", repeat_content=True, label="deleted_for_me_with_content")
    oops = b.record(chat, priya, t(), text="ignore")
    b.delete(chat, oops, priya, t(), "FOR_ME", repeat_content=False, label="deleted_for_me")
    b.system(chat, unnamed, t(), "PARTICIPANT_LEFT", "+1 202-555-0188 left", label="system_left")
    chat.members = (priya, amelia, siobhan, bjorn)
    b.system(chat, priya, t(), "PARTICIPANT_REMOVED", "Priya Raman removed Björn Svensson",
             label="system_removed")
    chat.members = (priya, amelia, siobhan)
    b.record(chat, amelia, t(), text="Big file is in the group, ping me if it does not open")


def _sales_group(b: RecordBuilder, p: dict[str, Person]) -> None:
    marcus, lukasz, ayse, amelia, chen = p["marcus"], p["lukasz"], p["ayse"], p["amelia"], p["chen"]
    chat = Chat(marcus, (marcus, lukasz, ayse, amelia, chen), b.group_id(), "فريق المبيعات – EMEA")
    t = b.clock()
    b.record(chat, marcus, t(), text="Targets for this week attached", label="csv_wins",
             attachments=[b.attachment("xlsx", 61 * 1024 + 7)])
    b.record(chat, lukasz, t(), text="Dzięki! Zaczynam od klientów w Gdańsku 🇵🇱")
    b.record(chat, ayse, t(), text="Teşekkürler, İstanbul ofisi hazır ✔️")
    typo = b.record(chat, chen, t(), text="我们下周二见 — meeting Tues 10am")
    b.edit(chat, typo, t(), "我们下周三见 — meeting Wed 10am")
    b.system(chat, chen, t(), "NUMBER_CHANGED", "陈静 Chen Jing changed their phone number to a new number")
    b.system(chat, ayse, t(), "OTHER", "Disappearing messages were turned off", label="system_other")
    b.record(chat, amelia, t(), message_type="DOCUMENT", text="Price list v7",
             attachments=[b.attachment("docx", 1_200_000 + b.rng.randint(0, 99_999))])


def _late_delivery(b: RecordBuilder, p: dict[str, Person]) -> None:
    # Siobhán's phone was offline for days; when it reconnected TeleMessage captured the backlog
    # in one burst, several records in the very same millisecond.
    siobhan, zoe = p["siobhan"], p["zoe"]
    chat = Chat(siobhan, (siobhan, zoe))
    burst = b.rng.randrange(b.lo + HOUR, b.hi - HOUR)
    backlog = [
        (zoe, "Are you around this week?"),
        (siobhan, "Travelling, signal is terrible 🏔️"),
        (zoe, "No rush, whenever you're back"),
        (siobhan, "Back Monday, will call"),
    ]
    sent = sorted(b.rng.randint(DAY + HOUR, 3 * DAY - HOUR) for _ in backlog)[::-1]
    for index, ((sender, text), late_by) in enumerate(zip(backlog, sent, strict=True)):
        archived = burst + (0 if index < 2 else index)
        b.record(chat, sender, archived, text=text, message_time=archived - late_by,
                 label="late_delivery" if index == 0 else None)


def _unmapped(b: RecordBuilder, p: dict[str, Person]) -> None:
    henrik, olivia, kwame, unnamed = p["henrik"], p["olivia"], p["kwame"], p["unnamed"]
    chat = Chat(henrik, (henrik, kwame))
    t = b.clock()
    b.record(chat, kwame, t(), text="Henrik, the trucks are at gate 4", label="unmapped")
    b.record(chat, henrik, t(), text="On my way")
    b.record(chat, kwame, t(), message_type="IMAGE", attachments=[b.small("jpeg")])
    chat = Chat(olivia, (olivia, unnamed))
    t = b.clock()
    b.record(chat, unnamed, t(), text="Is this still Olivia's number?", label="csv_without_mailbox")
    b.record(chat, olivia, t(), text="Yes, but I'm leaving Friday — please use the desk line")

