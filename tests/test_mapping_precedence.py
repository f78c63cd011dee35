from shared.domain.ledger import MappingRule
from shared.domain.records import ArchiveRecord
from shared.service.mapping import MailboxMapper
from tests.builders import ALICE, BOB, CUSTOMER, record
from tests.fakes import SetDirectory, StaticMapping


def mapped(rec, *, csv="PhoneNumber,EmailAddress\n", directory=(), custom=True, auto=True):
    mapper = MailboxMapper(SetDirectory(*directory), StaticMapping(csv), custom_enabled=custom, auto_enabled=auto)
    return {(m.address, m.rule) for m in mapper.map_record(ArchiveRecord.model_validate(rec))}


def test_csv_mapping_wins_over_the_email_property():
    rec = record(sender=ALICE, recipients=[CUSTOMER])
    csv = "PhoneNumber,EmailAddress\n+447700900001,alice.archive@contoso.example\n"
    result = mapped(rec, csv=csv, directory=("alice@contoso.example", "alice.archive@contoso.example"))
    assert result == {("alice.archive@contoso.example", MappingRule.CSV)}


def test_email_property_used_when_csv_address_has_no_mailbox():
    rec = record(sender=ALICE, recipients=[CUSTOMER])
    csv = "PhoneNumber,EmailAddress\n+447700900001,left.company@contoso.example\n"
    assert mapped(rec, csv=csv, directory=("alice@contoso.example",)) == {("alice@contoso.example", MappingRule.EMAIL)}


def test_only_addresses_with_a_mailbox_count():
    rec = record(sender=ALICE, recipients=[CUSTOMER])
    assert mapped(rec, directory=()) == set()


def test_every_mapped_participant_gets_the_record_and_addresses_compare_case_insensitively():
    rec = record(sender={**ALICE, "email": "Alice@Contoso.EXAMPLE"}, recipients=[BOB, CUSTOMER])
    csv = "PhoneNumber,EmailAddress\n+44 7700 900002,Bob@Contoso.example\n"
    result = mapped(rec, csv=csv, directory=("ALICE@contoso.example", "bob@contoso.example"))
    assert result == {("alice@contoso.example", MappingRule.EMAIL), ("bob@contoso.example", MappingRule.CSV)}


def test_automatic_mapping_can_be_switched_off():
    rec = record(sender=ALICE, recipients=[CUSTOMER])
    assert mapped(rec, directory=("alice@contoso.example",), auto=False) == set()


def test_custom_mapping_can_be_switched_off():
    rec = record(sender=BOB, recipients=[CUSTOMER])
    csv = "PhoneNumber,EmailAddress\n+447700900002,bob@contoso.example\n"
    assert mapped(rec, csv=csv, directory=("bob@contoso.example",), custom=False) == set()


def test_national_format_phone_in_record_matches_with_default_region():
    rec = record(sender={**BOB, "phone": "07700 900002"}, recipients=[CUSTOMER])
    mapper = MailboxMapper(
        SetDirectory("bob@contoso.example"),
        StaticMapping("PhoneNumber,EmailAddress\n+447700900002,bob@contoso.example\n"),
        default_region="GB",
    )
    assert [m.address for m in mapper.map_record(ArchiveRecord.model_validate(rec))] == ["bob@contoso.example"]


def test_same_mailbox_twice_in_a_record_is_written_once():
    rec = record(sender=ALICE, recipients=[ALICE, CUSTOMER])
    assert mapped(rec, directory=("alice@contoso.example",)) == {("alice@contoso.example", MappingRule.EMAIL)}
