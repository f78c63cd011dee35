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


class PhoneBook:
    """Directory phone mapping with real behaviour: a number on two users is nobody's."""

    def __init__(self, **numbers: str) -> None:
        self.owners: dict[str, list[str]] = {}
        for user, phone in numbers.items():
            self.owners.setdefault(phone, []).append(user.replace("_", ".") + "@contoso.example")
        self.questions = 0

    def mailbox_for_phone(self, e164: str) -> str | None:
        self.questions += 1
        users = self.owners.get(e164, [])
        return users[0] if len(users) == 1 else None


def mapper_with(*, csv="PhoneNumber,EmailAddress\n", directory=(), phones=None, catch_all=None, auto=True):
    return MailboxMapper(
        SetDirectory(*directory), StaticMapping(csv), auto_enabled=auto, phones=phones, catch_all=catch_all,
    )


def test_directory_phone_maps_a_participant_only_after_the_csv_and_the_email_property():
    rec = ArchiveRecord.model_validate(record(sender=ALICE, recipients=[BOB, CUSTOMER]))
    phones = PhoneBook(alice_smith="+447700900001", bob_jones="+447700900002")
    directory = ("alice@contoso.example", "alice.smith@contoso.example", "bob.jones@contoso.example")
    result = {(m.address, m.rule) for m in mapper_with(directory=directory, phones=phones).map_record(rec)}
    # Alice has an email property with a mailbox: that rule wins; Bob has only his phone in Entra.
    assert result == {("alice@contoso.example", MappingRule.EMAIL),
                      ("bob.jones@contoso.example", MappingRule.DIRECTORY_PHONE)}


def test_a_number_two_directory_users_share_maps_to_nobody():
    rec = ArchiveRecord.model_validate(record(sender=BOB, owner=BOB, recipients=[CUSTOMER]))
    phones = PhoneBook(bob_jones="+447700900002", switchboard="+447700900002")
    assert mapper_with(directory=("bob.jones@contoso.example", "switchboard@contoso.example"),
                       phones=phones).map_record(rec) == []


def test_the_directory_user_found_by_phone_must_still_have_a_mailbox():
    rec = ArchiveRecord.model_validate(record(sender=BOB, owner=BOB, recipients=[CUSTOMER]))
    assert mapper_with(directory=(), phones=PhoneBook(bob_jones="+447700900002")).map_record(rec) == []


def test_catch_all_takes_records_no_participant_maps_to_and_only_those():
    unmapped = ArchiveRecord.model_validate(record(sender=CUSTOMER, owner=CUSTOMER, recipients=[CUSTOMER]))
    mapped_rec = ArchiveRecord.model_validate(record(sender=ALICE, recipients=[CUSTOMER]))
    mapper = mapper_with(directory=("alice@contoso.example", "whatsapp-review@contoso.example"),
                         catch_all="WhatsApp-Review@contoso.example")
    assert [(m.address, m.rule) for m in mapper.map_record(unmapped)] == [
        ("whatsapp-review@contoso.example", MappingRule.CATCH_ALL)]
    assert [(m.address, m.rule) for m in mapper.map_record(mapped_rec)] == [
        ("alice@contoso.example", MappingRule.EMAIL)]


def test_a_catch_all_without_a_mailbox_leaves_the_record_unmapped():
    unmapped = ArchiveRecord.model_validate(record(sender=CUSTOMER, owner=CUSTOMER, recipients=[CUSTOMER]))
    assert mapper_with(directory=(), catch_all="gone@contoso.example").map_record(unmapped) == []


def test_explain_phone_names_the_rule_and_the_line_that_maps_a_number():
    csv = "PhoneNumber,EmailAddress\n+44 7700 900002,bob@contoso.example\n+44 7700 900009,left@contoso.example\n"
    mapper = mapper_with(csv=csv, directory=("bob@contoso.example", "carla@contoso.example"),
                         phones=PhoneBook(carla="+12025550143"))
    bob = mapper.explain_phone("+44 (0)7700 900002")
    assert (bob.phone, bob.mailbox, bob.rule, bob.notes) == (
        "+447700900002", "bob@contoso.example", MappingRule.CSV, ["mapping file line 2"])
    left = mapper.explain_phone("+447700900009")
    assert left.mailbox is None
    assert "the mapping file (line 3) names left@contoso.example, which has no mailbox" in left.notes
    carla = mapper.explain_phone("+1 202 555 0143")
    assert (carla.mailbox, carla.rule) == ("carla@contoso.example", MappingRule.DIRECTORY_PHONE)
    nonsense = mapper.explain_phone("4.47700900123E+11")
    assert nonsense.mailbox is None and "scientific notation" in nonsense.notes[0]


def test_local_directory_file_lists_phones_beside_addresses(tmp_path):
    from shared.adapters.local_files import FileDirectory

    path = tmp_path / "users.txt"
    path.write_text("alice@contoso.example, +44 7700 900001; \nbob@contoso.example,07700 900002\n"
                    "desk@contoso.example, 07700 900002  # shares Bob's number\nnophone@contoso.example\n",
                    encoding="utf-8")
    directory = FileDirectory(path, default_region="GB")
    assert directory.has_mailbox("NoPhone@contoso.example")
    assert directory.mailbox_for_phone("+447700900001") == "alice@contoso.example"
    assert directory.mailbox_for_phone("+447700900002") is None  # ambiguous


def test_a_business_platform_number_maps_by_its_phone_number_id_before_its_display_number():
    business = {"phone": "+447700900002", "phoneNumberId": "310000000000111"}
    rec = record(sender=business, recipients=[CUSTOMER])
    by_id = "PhoneNumber,EmailAddress\nphone_number_id:310000000000111,desk@contoso.example\n"
    directory = ("desk@contoso.example", "bob@contoso.example")
    assert mapped(rec, csv=by_id, directory=directory) == {("desk@contoso.example", MappingRule.CSV)}
    # Meta re-formats display numbers; the id still maps, and wins over a row for the number.
    both = by_id + "+447700900002,bob@contoso.example\n"
    assert mapped(record(sender={**business, "phone": "+44 7700 900002"}, recipients=[CUSTOMER]), csv=both,
                  directory=directory) == {("desk@contoso.example", MappingRule.CSV)}
    # Without an id row the display number maps as any number does.
    only_number = "PhoneNumber,EmailAddress\n+447700900002,bob@contoso.example\n"
    assert mapped(rec, csv=only_number, directory=directory) == {("bob@contoso.example", MappingRule.CSV)}
