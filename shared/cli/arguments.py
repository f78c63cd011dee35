"""argparse types for the identifiers a command line hands to a deployment: each value is checked
against its grammar (``shared.domain.identifiers``) while the arguments are parsed, so a bad one
ends the command with exit 2 and the argument named before any storage or network call."""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

from shared.domain import identifiers
from shared.domain.errors import PoisonReason
from shared.settings import ITEMS_POISON_QUEUE, LISTING_POISON_QUEUE, TRANSCRIPTS_POISON_QUEUE

POISON_QUEUES = (ITEMS_POISON_QUEUE, LISTING_POISON_QUEUE, TRANSCRIPTS_POISON_QUEUE)
POISON_REASONS = tuple(reason.value for reason in PoisonReason)
# What people type for a number: digits, +, separators, "tel:", letters of vanity numbers, an
# extension. Normalising it is the mapper's job; this only keeps out what is no phone number at all.
_PHONE_TEXT = re.compile(r"[0-9A-Za-z+()./ \-:;,#*]{1,64}")


def checked(check: Callable[[str, str], str]) -> Callable[[str], str]:
    """An argparse ``type`` from a check of ``shared.domain.identifiers``."""

    def parse(value: str) -> str:
        try:
            return check(value, "value")
        except identifiers.InvalidIdentifier as error:
            raise argparse.ArgumentTypeError(f"not {error.expected}") from None

    parse.__name__ = check.__name__.replace("_", " ")  # argparse names the type in some messages
    return parse


def choice_of(allowed: tuple[str, ...]) -> Callable[[str], str]:
    return checked(lambda value, parameter: identifiers.one_of(value, allowed, parameter))


window_id = checked(identifiers.window_id)
message_id = checked(identifiers.message_id)
poison_queue = choice_of(POISON_QUEUES)
poison_reason = choice_of(POISON_REASONS)


def number_between(low: float, high: float, *, whole: bool = False) -> Callable[[str], float]:
    """A finite number in [low, high]: float() takes "nan", "inf" and "1e300", which no count of
    days or seconds means, and an int() of a thousand digits costs a long parse."""

    def parse(value: str) -> float:
        try:
            number = int(value) if whole and len(value) <= 12 else float(value) if len(value) <= 32 else None
        except ValueError:
            number = None
        if number is None or not math.isfinite(number) or not low <= number <= high:
            kind = "a whole number" if whole else "a number"
            raise argparse.ArgumentTypeError(f"not {kind} from {low:g} to {high:g}")
        return number

    parse.__name__ = "number"
    return parse


def phone_region(value: str) -> str:
    """A region whose national numbers the phone library knows (GB, US, DE, ...), upper-cased."""
    import phonenumbers

    region = value.strip().upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise argparse.ArgumentTypeError("not a two-letter region the phone library knows, e.g. GB")
    return region


def phone_text(value: str) -> str:
    if not _PHONE_TEXT.fullmatch(value) or not any(char.isdigit() for char in value):
        raise argparse.ArgumentTypeError("not a phone number (digits, +, spaces and the usual separators)")
    return value


def add_delivery_arguments(command: argparse.ArgumentParser, *, item: str = "rendered item") -> None:
    """Where a file import's mail goes and how it is read: the options every import command shares
    (checked together by ``delivery_problem``)."""
    from pathlib import Path

    from shared.settings import MAX_ITEM_MB_CEILING

    command.add_argument("--directory", type=Path, metavar="USERS.txt",
                         help="addresses that have a mailbox, one per line (not with --graph)")
    command.add_argument("--mailbox-dir", type=Path, metavar="DIR", help="where .eml mailboxes go (not with --graph)")
    command.add_argument("--graph", action="store_true",
                         help="write through Microsoft Graph with the GRAPH_* settings from the environment")
    command.add_argument("--region", type=phone_region, default=None, metavar="CC",
                         help="region for national phone numbers, e.g. GB")
    command.add_argument("--max-item-mb", type=float, default=10.0, metavar="N",
                         help=f"largest {item} (default 10, at most {MAX_ITEM_MB_CEILING})")
    command.add_argument("--report", type=Path, metavar="REPORT.json", help="write the JSON report here")
    command.add_argument("--json", action="store_true", help="print the report as JSON instead of the counts")


def delivery_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with a command's choice of where mail goes (.eml folders, or Graph), if anything:
    the import commands share one rule, and one wording of it."""
    if args.graph:
        if args.directory or args.mailbox_dir:
            return "--graph uses Entra ID and the mailboxes themselves: drop --directory and --mailbox-dir"
    elif not (args.directory and args.mailbox_dir):
        return "give --directory and --mailbox-dir (or --graph to write into a real tenant)"
    elif not args.directory.is_file():
        return f"directory file {args.directory} does not exist or is not a file"
    return None


# Window ids hold four-digit years, and WhatsApp is younger than 2000: nothing outside this range
# can be a capture time.
EARLIEST, LATEST = datetime(2000, 1, 1, tzinfo=UTC), datetime(9999, 1, 1, tzinfo=UTC)


def moment(value: str, *, end_of_day: bool = False) -> datetime:
    text = value.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
            moment = moment + timedelta(days=1) if end_of_day else moment
        else:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError):
        # The value is not repeated: it may be anything.
        raise argparse.ArgumentTypeError(
            "not a date (YYYY-MM-DD) or an ISO 8601 time (2026-11-03T09:00Z)"
        ) from None
    if not EARLIEST <= moment < LATEST:
        raise argparse.ArgumentTypeError("not a time from the year 2000 to 9998")
    return moment
