"""The everyday chatter around the showcase: a small trading desk's texts, photos, documents,
voice notes, reactions, edits and calls, ``scale`` times over."""

from __future__ import annotations

from typing import Any

from shared.local.traffic.builder import MINUTE, SECOND, Chat, RecordBuilder

_FILLER_PER_SCALE = 260

_FILLER_TEXTS = (
    "Morning! Are we still on for 10:30?",
    "Can you send me the latest term sheet?",
    "Sent. Let me know if anything looks off.",
    "Price moved 3 bps since this morning, still want to proceed?",
    "Yes, go ahead at that level 👍",
    "Give me 5 min, on another call",
    "Confirmed. Booking now.",
    "Thanks!",
    "Can we push the meeting to Thursday?",
    "Client wants 2,500 units by end of month",
    "I'll check with compliance and come back to you",
    "👍🏽",
    "Running 10 mins late, sorry 🚆",
    "Do you have the invoice number?",
    "INV-2024-0457",
    "Perfect, thank you 🙏",
    "Lunch? 🍣",
    "Quote attached, valid until Friday",
    "Who's covering the desk this afternoon?",
    "Noted.",
    "Please call me when you're free",
    "Shipment left the warehouse at 14:05 📦",
    "Can you double-check the account number before we wire?",
    "Happy birthday!! 🎉🎂",
    "ok",
    "The order #4471 — الطلب جاهز للشحن",
    "תודה רבה! נדבר מחר",
    "Vielen Dank für die schnelle Rückmeldung",
    "5 < 7 and 9 > 3 & \"quotes\" 'too'",
    "Sending the family pic 👨‍👩‍👧 from the weekend",
    "Bid 101.25 / offer 101.40 for 5mm",
    "Let's take this offline",
    "See below\nLine two\r\nLine three",
)

_CAPTIONS = (
    "Whiteboard from today", "Delivery note", "Signed copy", "📸", None, None, "Screenshot of the quote",
)

def filler(b: RecordBuilder, scale: int) -> None:
    p = b.p
    rates = Chat(p["priya"], (p["priya"], p["danielle"], p["marcus"], p["kwame"]), b.group_id(),
                  "Desk – Rates 🇬🇧🇺🇸")
    chats = [
        (Chat(p["amelia"], (p["amelia"], p["kwame"])), 14),
        (Chat(p["amelia"], (p["amelia"], p["jose"])), 12),
        (Chat(p["jose"], (p["jose"], p["zoe"])), 10),
        (Chat(p["priya"], (p["priya"], p["unnamed"])), 8),
        (Chat(p["siobhan"], (p["siobhan"], p["fatima"])), 9),
        (Chat(p["lukasz"], (p["lukasz"], p["bjorn"])), 8),
        (Chat(p["ayse"], (p["ayse"], p["chen"])), 8),
        (Chat(p["marcus"], (p["marcus"], p["yael"])), 7),
        (Chat(p["danielle"], (p["danielle"], p["kwame"])), 8),
        (rates, 14),
        (Chat(p["henrik"], (p["henrik"], p["zoe"])), 2),
    ]
    total_weight = sum(weight for _, weight in chats)
    for chat, weight in chats:
        count = max(1, round(_FILLER_PER_SCALE * scale * weight / total_weight))
        _chatter(b, chat, count)


def _session_times(b: RecordBuilder, count: int) -> list[int]:
    times: list[int] = []
    while len(times) < count:
        size = min(count - len(times), b.rng.randint(3, 20))
        t = b.clock(size * 5 * MINUTE)
        times.extend(t(3 * SECOND, 5 * MINUTE) for _ in range(size))
    return sorted(times)


def _chatter(b: RecordBuilder, chat: Chat, count: int) -> None:
    rng = b.rng
    history: list[dict[str, Any]] = []
    for archived in _session_times(b, count):
        sender = rng.choice(chat.members)
        roll = rng.random()
        texts = [r for r in history if r["messageType"] == "TEXT" and r["event"] == "CREATED"]
        own_texts = [r for r in texts if r["sender"]["phone"] in (sender.phone, sender.captured_phone)]
        reactable = [r for r in history
                     if r["event"] == "CREATED" and r["messageType"] not in ("REACTION", "CALL")]
        if roll < 0.68 or (0.90 <= roll < 0.95 and not reactable):
            reply_to = rng.choice(history[-6:]) if history and rng.random() < 0.15 else None
            record = b.record(chat, sender, archived, text=rng.choice(_FILLER_TEXTS), reply_to=reply_to,
                              forwarded=rng.random() < 0.03)
        elif roll < 0.78:
            record = b.record(chat, sender, archived, message_type="IMAGE", text=rng.choice(_CAPTIONS),
                              attachments=[b.small("jpeg", 6 * 1024, 45 * 1024)])
        elif roll < 0.81:
            record = b.record(chat, sender, archived, message_type="IMAGE", text=rng.choice(_CAPTIONS),
                              attachments=[b.attachment("jpeg", rng.randint(60 * 1024, 900 * 1024))])
        elif roll < 0.84:
            kind = rng.choice(("pdf", "xlsx", "docx"))
            record = b.record(chat, sender, archived, message_type="DOCUMENT",
                              attachments=[b.attachment(kind, rng.randint(50 * 1024, 2 * 1024 * 1024))])
        elif roll < 0.88:
            record = b.record(chat, sender, archived, message_type="VOICE_NOTE",
                              attachments=[b.small("opus", 5 * 1024, 40 * 1024)])
        elif roll < 0.90:
            record = b.record(chat, sender, archived, message_type="STICKER",
                              attachments=[b.small("sticker", 8 * 1024, 30 * 1024)])
        elif roll < 0.95 and reactable:
            record = b.reaction(chat, sender, archived, rng.choice(reactable[-5:]),
                                rng.choice(("👍", "❤️", "😂", "🙏", "👍🏽")))
        elif roll < 0.97 and own_texts:
            original = own_texts[-1]
            record = b.edit(chat, original, archived, original["textContent"] + " ✏️")
        elif roll < 0.98 or not own_texts:
            other = rng.choice([m for m in chat.members if m.key != sender.key])
            record = b.call(chat, other if rng.random() < 0.5 else sender, archived, "VOICE", "ANSWERED",
                            duration=rng.randint(20, 900))
        else:
            record = b.delete(chat, own_texts[-1], sender, archived, "FOR_EVERYONE", repeat_content=True)
        history.append(record)

