import codecs

import pytest

from shared.domain.mapping_table import Severity, parse_mapping
from shared.domain.phones import PhoneNumberError, normalize_phone


@pytest.mark.parametrize("raw,region", [
    ("+44 7700 900123", None),
    ("+44 (0)7700 900123", None),
    ("0044 7700 900123", None),
    ("07700-900-123", "GB"),
    ("tel:+447700900123", None),
    ("+44.7700.900.123", None),
])
def test_human_formats_normalise_to_e164(raw, region):
    assert normalize_phone(raw, region) == "+447700900123"


def test_possible_but_unallocated_numbers_are_accepted():
    # 07700 900xxx is reserved for drama: "valid" says no, but the number is possible.
    assert normalize_phone("+447700900999") == "+447700900999"


def test_scientific_notation_error_says_how_to_fix_it():
    with pytest.raises(PhoneNumberError, match="format the column as Text"):
        normalize_phone("4.47700900123E+11")


def test_national_number_without_region_asks_for_international_form():
    with pytest.raises(PhoneNumberError, match="international form"):
        normalize_phone("07700 900123")


def test_mapping_file_with_bom_semicolons_quotes_and_blank_lines():
    data = codecs.BOM_UTF8 + b'"Phone Number";"E-mail"\r\n\r\n"+44 7700 900123";"Alice@Contoso.example"\r\n'
    parsed = parse_mapping(data)
    assert parsed.ok
    assert parsed.table.lookup("+447700900123").email == "alice@contoso.example"


def test_mapping_file_saved_as_utf16_by_excel():
    data = "PhoneNumber,EmailAddress\n+447700900123,a@contoso.example\n".encode("utf-16")  # BOM + LE
    parsed = parse_mapping(data)
    assert parsed.table.lookup("+447700900123").email == "a@contoso.example"


def test_every_problem_is_reported_with_its_line_number():
    text = (
        "PhoneNumber,EmailAddress\n"
        "+447700900001,a@contoso.example\n"   # 2 ok
        "not a number,b@contoso.example\n"    # 3 error
        "+447700900003,not-an-address\n"      # 4 error
        "+447700900001,a@contoso.example\n"   # 5 warning: repeat
        "+447700900001,z@contoso.example\n"   # 6 error: conflict
        "4.47700900123E+11,c@contoso.example\n"  # 7 error
    )
    parsed = parse_mapping(text)
    found = {(p.line, p.severity) for p in parsed.problems}
    assert found == {
        (3, Severity.ERROR), (4, Severity.ERROR), (5, Severity.WARNING), (6, Severity.ERROR), (7, Severity.ERROR),
    }
    # The conflicting phone is used for nobody until the file is fixed.
    assert parsed.table.lookup("+447700900001") is None
    assert not parsed.ok


def test_missing_header_is_an_error():
    parsed = parse_mapping("+447700900001,a@contoso.example\n")
    assert not parsed.ok and parsed.problems[0].line == 1


@pytest.mark.parametrize("raw,region", [
    ("447700900123", None), ("447700900123", "US"), ("447700900123", "GB"), ("+44 7700 900123", None),
    ("07700 900123", "GB"),
])
def test_record_phones_as_whatsapp_ids_are_read_as_international(raw, region):
    from shared.domain.phones import normalize_participant_phone

    assert normalize_participant_phone(raw, region) == "+447700900123"


def test_mapping_file_does_not_guess_a_country_for_bare_digits():
    assert not parse_mapping("PhoneNumber,EmailAddress\n2025550143,a@contoso.example\n").ok


def test_excel_unicode_text_is_utf16_with_tabs():
    data = "PhoneNumber\tEmailAddress\r\n+447700900123\ta@contoso.example\r\n".encode("utf-16")
    parsed = parse_mapping(data)
    assert parsed.ok and parsed.table.lookup("+447700900123").email == "a@contoso.example"


def test_phone_errors_never_show_the_whole_number():
    for raw in ("4.47700900123E+11", "07700 900123", "+1 202 555 01"):
        with pytest.raises(PhoneNumberError) as error:
            normalize_phone(raw)
        digits = "".join(c for c in raw if c.isdigit())
        assert digits not in "".join(c for c in str(error.value) if c.isdigit() or c == " ").replace(" ", "")


def test_excel_csv_from_a_european_locale_is_cp1252_with_semicolons_extra_columns_and_crlf():
    # Excel "CSV (Comma delimited)" on a German or French Windows: ANSI code page, ";" separators,
    # the sheet's other columns kept, empty trailing cells, CRLF.
    data = ("Name;Mobile Phone;UPN;Abteilung;;\r\n"
            "José Núñez;+44 (0)7700 900102;Jose.Nunez@contoso.example;Vertrieb;;\r\n"
            "Zoë Brandt;0044 7700 900103;zoe.brandt@contoso.example;Einkauf;;\r\n").encode("cp1252")
    parsed = parse_mapping(data, "GB")
    assert parsed.ok and parsed.rows == 2
    assert parsed.table.lookup("+447700900102").email == "jose.nunez@contoso.example"
    assert parsed.table.lookup("+447700900103").email == "zoe.brandt@contoso.example"


def test_libreoffice_csv_is_utf8_without_bom_every_field_quoted_email_column_first():
    data = (b'"Email","Phone","Notes"\n'
            b'"amelia.hughes@contoso.example","+44 7700 900101","desk, 3rd floor"\n'
            b'"priya.raman@contoso.example","tel:+1-202-555-0110",""\n')
    parsed = parse_mapping(data)
    assert parsed.ok
    assert parsed.table.lookup("+447700900101").email == "amelia.hughes@contoso.example"
    assert parsed.table.lookup("+12025550110").email == "priya.raman@contoso.example"


@pytest.mark.parametrize("phone_header,email_header", [
    ("PhoneNumber", "EmailAddress"), ("phone", "email"), ("MOBILE", "Mail"), ("MobilePhone", "UserPrincipalName"),
    ("Phone Number", "UPN"), ("phone_number", "E-mail"),
])
def test_header_variants_in_any_case(phone_header, email_header):
    parsed = parse_mapping(f"{phone_header},{email_header}\n+447700900123,a@contoso.example\n")
    assert parsed.ok and len(parsed.table) == 1


def test_excel_scientific_notation_in_a_file_names_the_line_and_the_fix():
    parsed = parse_mapping(
        "PhoneNumber,EmailAddress\n+447700900001,a@contoso.example\n4.47700900123E+11,b@contoso.example\n"
    )
    (problem,) = parsed.errors
    assert problem.line == 3 and "scientific notation" in problem.message and "as Text" in problem.message


@pytest.mark.parametrize("address", ["a/b@contoso.com", "x?$select=id@contoso.com", "a%2f@contoso.com"])
def test_an_address_rfc_5322_allows_but_no_mailbox_has_is_an_error_in_the_mapping_file(address):
    """The connector never sends such an address to the directory: `mapping check` says so at once."""
    parsed = parse_mapping(f"PhoneNumber,EmailAddress\n+44 7700 900123,{address}\n".encode(), None)
    assert not parsed.ok and len(parsed.table) == 0
    assert "cannot be a mailbox" in parsed.problems[0].message


def test_a_mapping_row_may_name_a_business_platform_number_by_its_phone_number_id():
    from shared.domain.mapping_table import parse_mapping

    parsed = parse_mapping("PhoneNumber,EmailAddress\nphone_number_id:310000000000111,desk@contoso.example\n"
                           "Phone_Number_ID: 42,desk2@contoso.example\nphone_number_id:../x,x@contoso.example\n")
    assert parsed.table.lookup_phone_number_id("310000000000111").email == "desk@contoso.example"
    assert parsed.table.lookup_phone_number_id("42").line == 3
    [problem] = parsed.errors
    assert problem.line == 4 and "phone_number_id" in problem.message and "../x" not in problem.message
