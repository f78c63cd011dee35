"""Contract of the custom mapping's source (MappingSource), held by the file source (MAPPING_FILE) and
the blob source on Azurite alike: no mapping yet is an empty table (nothing maps by CSV, nothing
fails); a published mapping is read with the default region applied to national numbers; a replaced
one is seen at the next read after its refresh; a removed one is empty again. (The in-memory
StaticMapping is a fixed table by design: it has nothing to re-read.)"""

from __future__ import annotations

import os
import uuid

import pytest

PHONE, MAILBOX = "+447700900127", "henrik.lovas@contoso.example"
OTHER_PHONE, OTHER_MAILBOX = "+447700900128", "ines.moreau@contoso.example"


class _File:
    def __init__(self, path) -> None:
        from shared.adapters.local_files import FileMappingSource

        self.path = path
        self.source = FileMappingSource(path, default_region="GB")
        self._writes = 0

    def publish(self, csv: bytes) -> None:
        self.path.write_bytes(csv)
        self._writes += 1  # a later modification time for each write, however quick
        os.utime(self.path, (1_700_000_000 + self._writes, 1_700_000_000 + self._writes))

    def remove(self) -> None:
        self.path.unlink()


class _Blob:
    def __init__(self, blobs) -> None:
        from shared.adapters.azure_storage import BlobMappingSource

        self.container = f"state-{uuid.uuid4().hex[:12]}"
        self.blobs = blobs
        # Refreshed at every read here: how often a worker looks is test_mapping_replay's business.
        self.source = BlobMappingSource(blobs, self.container, "mapping/phone-to-email.csv",
                                        default_region="GB", refresh_seconds=0)

    def publish(self, csv: bytes) -> None:
        self.source.upload(csv)

    def remove(self) -> None:
        self.blobs.get_container_client(self.container).delete_blob("mapping/phone-to-email.csv")


@pytest.fixture(params=["file", "blob"])
def mapping(request, tmp_path):
    if request.param == "file":
        return _File(tmp_path / "phone-to-email.csv")
    return _Blob(request.getfixturevalue("azurite_blobs"))


def test_no_mapping_yet_is_an_empty_table(mapping):
    assert len(mapping.source.current()) == 0


def test_a_published_mapping_is_read_with_the_default_region_applied(mapping):
    mapping.publish(f"PhoneNumber,EmailAddress\n07700 900127,{MAILBOX}\n+44 7700 900128,{OTHER_MAILBOX}\n".encode())
    table = mapping.source.current()
    assert len(table) == 2
    assert table.lookup(PHONE).email == MAILBOX and table.lookup(OTHER_PHONE).email == OTHER_MAILBOX


def test_a_replaced_mapping_is_seen_at_the_next_read(mapping):
    mapping.publish(f"PhoneNumber,EmailAddress\n07700 900127,{MAILBOX}\n".encode())
    assert mapping.source.current().lookup(PHONE).email == MAILBOX
    mapping.publish(f"PhoneNumber,EmailAddress\n07700 900128,{OTHER_MAILBOX}\n".encode())
    table = mapping.source.current()
    assert table.lookup(PHONE) is None and table.lookup(OTHER_PHONE).email == OTHER_MAILBOX


def test_rows_with_errors_are_left_out_and_the_rest_still_maps(mapping):
    mapping.publish(f"PhoneNumber,EmailAddress\nnot a phone,{OTHER_MAILBOX}\n07700 900127,{MAILBOX}\n".encode())
    table = mapping.source.current()
    assert len(table) == 1 and table.lookup(PHONE).email == MAILBOX


def test_a_removed_mapping_is_empty_again(mapping):
    mapping.publish(f"PhoneNumber,EmailAddress\n07700 900127,{MAILBOX}\n".encode())
    assert len(mapping.source.current()) == 1
    mapping.remove()
    assert len(mapping.source.current()) == 0
