"""How an import command is wired: through the composition root the functions use, with the command
line's choices over the environment's settings, so `import` and `import-chat-export` map and write a
record exactly as the function app would."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

if TYPE_CHECKING:
    from shared.composition import Container
    from shared.ports import MailboxWriter
    from shared.service.mapping import MailboxMapper


def import_wiring(args: argparse.Namespace, *, mapping: Path | None, auto_mapping: bool = True) -> Wiring:
    """The composition root the functions use, with an import command's choices over the environment's
    settings: where mail goes (Graph, or the .eml folders and their directory file), the mapping file,
    the region, the item limit. Everything else comes from the environment as it does in the function
    app (DIRECTORY_PHONE_MAPPING_ENABLED, CATCH_ALL_MAILBOX, ARCHIVE_ITEM_CLASS…), so a record is mapped
    and written by the command exactly as the functions would map and write it. A bad setting is a
    ValueError naming it. With Graph, no storage: each write looks its record up before creating it."""
    from shared.composition import Container
    from shared.settings import Settings

    choices: dict[str, object] = {
        "mapping_file": str(mapping) if mapping is not None else "",
        "custom_mapping_enabled": mapping is not None,
        "auto_mapping_enabled": auto_mapping,
        "max_item_mb": args.max_item_mb,
    }
    if args.region is not None:
        choices["default_phone_region"] = args.region
    if args.graph:
        choices.update(directory="graph", mailbox_writer="graph")
    else:
        choices.update(directory="file", directory_file=str(args.directory), mailbox_writer="eml",
                       eml_mailbox_dir=str(args.mailbox_dir))
    try:
        container = Container(Settings(**choices))  # pyright: ignore[reportArgumentType]
    except ValidationError as error:
        first = error.errors(include_input=False, include_url=False)[0]
        raise ValueError(f"setting {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    writer = container.graph_mailbox if args.graph else container.writer
    return Wiring(container, container.mapper, writer)


@dataclass(frozen=True)
class Wiring:
    container: Container
    mapper: MailboxMapper
    writer: MailboxWriter
