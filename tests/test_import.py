"""`sphere contacts import`: messy real-world exports merged into an audience file."""
from __future__ import annotations

import csv
import email as email_lib
import shutil
from email import policy
from pathlib import Path

import pytest

from pipeline.contacts.audience import load_audience
from pipeline.contacts.exports import decode, read_csv, split_name, split_tags
from pipeline.contacts.importer import import_contacts, merge_contact
from pipeline.contacts.neighbourhoods import load_neighbourhoods
from pipeline.contacts.vcard import parse_vcards
from pipeline.errors import ConfigError
from pipeline.state.store import Store
from tests.conftest import NOW

FIXTURES = Path(__file__).parent / "fixtures" / "imports"


@pytest.fixture
def crm(project: Path) -> Path:
    """The sample project plus an existing 'clients' audience, a neighbourhoods mapping
    and one address on the store's suppression list."""
    shutil.copyfile(FIXTURES / "existing.csv", project / "audiences" / "clients.csv")
    shutil.copyfile(FIXTURES / "neighbourhoods.yaml", project / "neighbourhoods.yaml")
    store = Store.open(project / "var" / "sphere.db")
    store.suppress("bounced.bob@example.net", "bounced", "webhook:bounce", NOW)
    store.close()
    return project


def rows(project: Path, audience: str = "clients") -> dict[str, dict[str, str]]:
    """email -> row of an audience file, as written."""
    with (project / "audiences" / f"{audience}.csv").open(encoding="utf-8", newline="") as f:
        return {r["email"]: r for r in csv.DictReader(f)}


def test_every_export_merges_into_one_audience(crm: Path, cli) -> None:
    audience = crm / "audiences" / "clients.csv"
    google = cli("contacts", "import", str(FIXTURES / "google.csv"), "--audience", "clients",
                 project=crm)
    assert google.exit_code == 0, google.output
    assert google.output.splitlines()[0] == (
        "imported 2, updated 2, skipped 3: row 5 'bob@' invalid email, row 6 "
        "'PRIYA.RAMAN@example.org' duplicate of row 4, row 8 missing email")
    assert "row 4 'priya.raman@example.org': also has priya@work.example.com" in google.output
    assert "row 7 'emily.tran@example.org': unsubscribed; stays unsubscribed" in google.output
    assert "1 already in the audience with nothing new" in google.output

    outlook = cli("contacts", "import", str(FIXTURES / "outlook.csv"), "--audience",
                  "clients", project=crm)
    assert outlook.output.splitlines()[0] == "imported 3, updated 1, skipped 0"
    assert "read as Windows-1252" in outlook.output
    assert "on the suppression list; added as unsubscribed" in outlook.output

    fub = cli("contacts", "import", str(FIXTURES / "followupboss.csv"), "--audience",
              "clients", project=crm)
    assert fub.output.splitlines()[0] == (
        "imported 2, updated 0, skipped 1: row 5 'WEI.CHEN@example.com' duplicate of row 2")

    plain = cli("contacts", "import", str(FIXTURES / "plain.tsv"), "--audience", "clients",
                project=crm)
    assert plain.output.splitlines()[0] == (
        "imported 3, updated 0, skipped 1: row 6 'no-at-sign.example.com' invalid email")

    vcf = cli("contacts", "import", str(FIXTURES / "contacts.vcf"), "--audience", "clients",
              project=crm)
    assert vcf.output.splitlines()[0] == "imported 4, updated 0, skipped 1: card 5 missing email"

    got = rows(crm)
    assert len(got) == 5 + 2 + 3 + 2 + 3 + 4
    header = audience.read_text(encoding="utf-8").splitlines()[0]
    assert header == "email,first_name,last_name,neighbourhood,interests,relationship," \
                     "closing_date,timezone,note,private_note,status"
    # The unsubscribed contact came back in two exports and is still unsubscribed, with
    # her note; the import only filled her empty interests.
    emily = got["emily.tran@example.org"]
    assert (emily["status"], emily["note"], emily["interests"], emily["relationship"]) == (
        "unsubscribed", "Asked for fewer emails, then unsubscribed", "houseplants", "sphere")
    # A name that differs only by accents keeps the user's spelling; a changed one updates.
    assert got["zoe.hartmann@example.com"]["first_name"] == "Zoë"
    ana = got["ana.silva@example.com"]
    assert (ana["last_name"], ana["note"], ana["neighbourhood"]) == (
        "Silva-Pereira", "Loves the harbour walk", "Harbor Point")
    marcus = got["marcus.bell@example.com"]
    assert (marcus["last_name"], marcus["neighbourhood"], marcus["interests"],
            marcus["relationship"]) == ("Bell", "Maple Heights", "golf;wine lovers", "sphere")
    priya = got["priya.raman@example.org"]
    assert priya["neighbourhood"] == "Maple Heights"  # ZIP+4 98001-4417
    # A CRM's Notes are private: kept for the agent, never in an email.
    assert (priya["note"], priya["private_note"]) == (
        "", "Met at the open house on Elm.\nTwo kids, one in kindergarten.")
    assert got["kim.lee@example.net"]["neighbourhood"] == "Cedar Grove"
    jose = got["jose.mueller@example.com"]
    assert (jose["first_name"], jose["last_name"], jose["neighbourhood"], jose["interests"]) \
        == ("José", "Müller", "Maple Heights", "golf;cooking")
    assert got["francoise.lefevre@example.fr"]["first_name"] == "Françoise"
    assert got["francoise.lefevre@example.fr"]["neighbourhood"] == ""
    assert got["bounced.bob@example.net"]["status"] == "unsubscribed"
    assert (got["wei.chen@example.com"]["relationship"],
            got["wei.chen@example.com"]["neighbourhood"]) == ("past_client", "Maple Heights")
    assert (got["tom.nakamura@example.net"]["relationship"],
            got["tom.nakamura@example.net"]["neighbourhood"]) == ("prospect",
                                                                   "Old Mill District")
    assert got["anna.vdb@example.nl"]["last_name"] == "van der Berg"
    assert got["prince@example.com"]["first_name"] == "Prince"
    liam = got["liam@example.ie"]
    assert (liam["neighbourhood"], liam["interests"]) == ("Harbor Point", "kayaking;craft beer")
    assert liam["private_note"] == ("Sold his condo in 2019; wants a garden next time.\n"
                            "Call after 5pm on weekdays.")
    assert got["soren@example.dk"]["interests"] == "philosophy, ethics;running"
    juergen = got["juergen@example.de"]
    assert (juergen["first_name"], juergen["last_name"], juergen["private_note"]) == (
        "Jürgen", "Müller", "Likes the farmers market and the harbour.")
    assert got["maya@example.com"]["neighbourhood"] == "Maple Heights"
    assert got["harold.example.com"]["last_name"] == "Osei"  # a bad row is kept as it was
    # The file is still a valid audience: only the row that was already bad is reported.
    loaded = load_audience(audience, crm)
    assert len(loaded.contacts) == 18
    assert [p.line for p in loaded.problems] == [6]
    assert not list(audience.parent.glob(".*.tmp"))

    again = cli("contacts", "import", str(FIXTURES / "google.csv"), "--audience", "clients",
                project=crm)
    assert again.output.splitlines()[0].startswith("imported 0, updated 0, skipped 3")
    assert "5 already in the audience with nothing new" in again.output
    assert rows(crm) == got


def test_dry_run_writes_nothing(crm: Path, cli) -> None:
    audience = crm / "audiences" / "clients.csv"
    before = audience.read_bytes()
    result = cli("contacts", "import", str(FIXTURES / "google.csv"), "--audience", "clients",
                 "--dry-run", project=crm)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Dry run: imported 2, updated 2, skipped 3")
    assert "Nothing written" in result.output
    assert audience.read_bytes() == before
    fresh = cli("contacts", "import", str(FIXTURES / "contacts.vcf"), "--audience", "new-list",
                "--dry-run", project=crm)
    assert fresh.output.startswith("Dry run: imported 4")
    assert not (crm / "audiences" / "new-list.csv").exists()


def test_new_audience_is_created_and_loads(crm: Path, cli) -> None:
    result = cli("contacts", "import", str(FIXTURES / "outlook.csv"), "--audience", "outlook",
                 project=crm)
    assert result.exit_code == 0, result.output
    loaded = load_audience(crm / "audiences" / "outlook.csv", crm)
    assert [c.email for c in loaded.contacts] == [
        "jose.mueller@example.com", "ana.silva@example.com", "francoise.lefevre@example.fr",
        "bounced.bob@example.net"]
    assert [c.status for c in loaded.contacts] == ["subscribed"] * 3 + ["unsubscribed"]
    assert not loaded.problems
    assert cli("check", project=crm).exit_code == 0


def test_map_names_unknown_columns(crm: Path, cli, tmp_path: Path) -> None:
    export = tmp_path / "odd.csv"
    export.write_text("Full Name;Primary E-mail Addr;Hood;Likes\n"
                      "Rosa Parks;rosa@example.com;Old Mill District;Reading\n",
                      encoding="utf-8")
    # No alias matches "Primary E-mail Addr", but its cells are addresses: found anyway.
    found = cli("contacts", "import", str(export), "--audience", "odd", "--dry-run",
                project=crm)
    assert "'Primary E-mail Addr' -> email" in found.output
    assert found.output.startswith("Dry run: imported 1")
    phones = tmp_path / "phones.csv"
    phones.write_text("Who,Reach at\nRosa Parks,555-0100\n", encoding="utf-8")
    refused = cli("contacts", "import", str(phones), "--audience", "odd", project=crm)
    assert refused.exit_code == 1
    assert f"{phones}:1: email: no column holds email addresses (columns: Who, Reach at)" \
        in refused.output
    assert "--map 'COLUMN=email'" in refused.output
    ok = cli("contacts", "import", str(export), "--audience", "odd", "--map",
             "primary e-mail addr=email", "--map", "Hood=neighbourhood", "--map",
             "Likes=interests", project=crm)
    assert ok.exit_code == 0, ok.output
    rosa = rows(crm, "odd")["rosa@example.com"]
    assert (rosa["first_name"], rosa["last_name"], rosa["neighbourhood"], rosa["interests"]) \
        == ("Rosa", "Parks", "Old Mill District", "reading")
    bad = cli("contacts", "import", str(export), "--audience", "odd", "--map", "Hood=area",
              project=crm)
    assert bad.exit_code == 1 and "unknown field" in bad.output and "neighbourhood" in bad.output


def test_a_stray_quote_names_the_line(crm: Path, cli, tmp_path: Path) -> None:
    export = tmp_path / "broken.csv"
    export.write_text('Email,Name\na@example.com,Ann\n"b@example.com"x,Bo\n', encoding="utf-8")
    result = cli("contacts", "import", str(export), "--audience", "x", project=crm)
    assert result.exit_code == 1
    assert f"{export}:3:" in result.output and "close the quote" in result.output


def test_bad_neighbourhoods_file_is_reported_with_its_line(crm: Path, cli) -> None:
    (crm / "neighbourhoods.yaml").write_text(
        "neighbourhoods:\n  Maple Heights: {zips: [\"98001\"]}\n  Cedar Grove: {zip: []}\n",
        encoding="utf-8")
    result = cli("contacts", "import", str(FIXTURES / "plain.tsv"), "--audience", "x",
                 project=crm)
    assert result.exit_code == 1
    assert "neighbourhoods.yaml:3: neighbourhoods.Cedar Grove.zip: unknown key" in result.output


# ---- the parts ------------------------------------------------------------------------
@pytest.mark.parametrize("full, expected", [
    ("José Müller", ("José", "Müller")),
    ("Müller, José", ("José", "Müller")),
    ("Anna van der Berg", ("Anna", "van der Berg")),
    ("Dr. Mary Ann Smith Jr.", ("Mary Ann", "Smith Jr.")),
    ("Prince", ("Prince", "")),
    ("  ", ("", "")),
])
def test_split_name(full: str, expected: tuple[str, str]) -> None:
    assert split_name(full) == expected


def test_tags_drop_system_groups() -> None:
    assert split_tags(["* myContacts ::: Golf ::: Wine Lovers", "Imported on 5/1/24;Cooking",
                       "golf, Starred"]) == ("golf", "wine lovers", "cooking")


def test_decode_falls_back_to_cp1252_and_reads_boms() -> None:
    assert decode("José Müller".encode("cp1252")) == ("José Müller", "Windows-1252")
    assert decode("\ufeffEmail".encode("utf-8")) == ("Email", "UTF-8")
    assert decode("Email,Name".encode("utf-16")) == ("Email,Name", "UTF-16")


def test_semicolon_export_with_quoted_newlines() -> None:
    text = 'Name;E-mail Address;Notes\n"Ng, Lan";lan@example.com;"two\nlines; one cell"\n'
    records, columns = read_csv(text, "x.csv", {})
    assert columns == (("Name", "name"), ("E-mail Address", "email"),
                       ("Notes", "private_note"))
    assert (records[0].first_name, records[0].last_name, records[0].private_note) == (
        "Lan", "Ng", "two\nlines; one cell")


def test_merge_rule() -> None:
    old = {"email": "a@example.com", "first_name": "Zoë", "last_name": "Smith", "note": "hi",
           "neighbourhood": "", "interests": "golf", "status": "unsubscribed",
           "custom": "kept"}
    new = {"email": "a@example.com", "first_name": "ZOE", "last_name": "Jones", "note": "new",
           "neighbourhood": "Cedar Grove", "interests": "art", "status": ""}
    assert merge_contact(old, new) == {**old, "last_name": "Jones",
                                       "neighbourhood": "Cedar Grove"}
    # An import can unsubscribe someone, never resubscribe them.
    assert merge_contact({**old, "status": "subscribed"},
                         {**new, "status": "unsubscribed"})["status"] == "unsubscribed"


def test_neighbourhood_lookup_prefers_street_over_zip() -> None:
    hoods = load_neighbourhoods(FIXTURES / "neighbourhoods.yaml")
    assert hoods.lookup("88 Linden St", "98002") == "Maple Heights"
    assert hoods.lookup("", "98002-1111") == "Cedar Grove"
    assert hoods.lookup("1 Old Mill Road", "") == "Old Mill District"
    assert hoods.lookup("1 Mill Road", "99999") == ""


def test_vcard_folding_and_quoted_printable() -> None:
    cards = parse_vcards((FIXTURES / "contacts.vcf").read_text(encoding="utf-8"))
    assert [c.emails[:1] for c in cards] == [("liam@example.ie",), ("soren@example.dk",),
                                            ("juergen@example.de",), ("maya@example.com",), ()]
    assert cards[0].note.endswith("Call after 5pm on weekdays.")
    assert (cards[2].first_name, cards[2].last_name) == ("Jürgen", "Müller")
    assert cards[0].categories == ("Kayaking", "Craft Beer", "myContacts")


def test_unseen_export_shapes() -> None:
    """Excel's sep= line, several addresses in one cell, display-name addresses and
    headers only a pattern recognises."""
    text = ("sep=;\nContact Name;Emails;Mailing Street;Mailing Zip/Postal Code;Client Tags\n"
            "Lan Ng;Lan Ng <lan@example.com> ::: lan@work.example.com;1 Birch Ln;98001;"
            "VIP, Golf\n")
    records, columns = read_csv(text, "x.csv", {})
    assert columns == (("Contact Name", "name"), ("Emails", "email"),
                       ("Mailing Street", "street"), ("Mailing Zip/Postal Code", "zip"),
                       ("Client Tags", "interests"))
    rec = records[0]
    assert (rec.where, rec.line, rec.emails, rec.interests) == (
        "row 3", 3, ("Lan Ng <lan@example.com>", "lan@work.example.com"), ("vip", "golf"))


def test_map_override_errors_list_the_columns() -> None:
    with pytest.raises(ConfigError) as info:
        read_csv("Email,Name\na@example.com,A\n", "x.csv", {"Mail": "email"})
    assert "columns are: Email, Name" in str(info.value)


def test_relationship_labels_set_the_relationship(tmp_path: Path) -> None:
    export = tmp_path / "labels.csv"
    export.write_text("First Name,E-mail 1 - Value,Labels,Stage\n"
                      "Rita,rita@example.com,* myContacts ::: Jazz ::: Past Clients,\n"
                      "Lou,lou@example.com,Sphere ::: Golf,Lead\n", encoding="utf-8")
    report = import_contacts(export, tmp_path / "audiences", "x")
    assert (report.imported, report.skipped) == (2, ())
    got = {r["email"]: (r["interests"], r["relationship"]) for r in csv.DictReader(
        (tmp_path / "audiences" / "x.csv").open(encoding="utf-8", newline=""))}
    # The Stage column wins over a tag; the tag is not an interest either way.
    assert got == {"rita@example.com": ("jazz", "past_client"),
                   "lou@example.com": ("golf", "prospect")}


@pytest.mark.parametrize("text, expected", [
    # LinkedIn: notes above the header.
    (("Notes:\n\"When exporting your connection data, some emails may be missing.\"\n\n"
     "First Name,Last Name,URL,Email Address,Company,Position,Connected On\n"
     "Ada,Lovelace,https://www.linkedin.com/in/ada,ada@example.com,Analytical,Poet,01 Jan 2024\n"),
     [("ada@example.com", "Ada", "Lovelace", "", "", "subscribed")]),
    # Mailchimp's unsubscribed export: UNSUB_TIME set, tags quoted inside the cell.
    (("Email Address,First Name,Last Name,TAGS,UNSUB_TIME,UNSUB_REASON\n"
     "mo@example.com,Mo,Salah,\"\"\"Golf\"\",\"\"Wine\"\"\",2026-03-02 10:00:00,No longer interested\n"),
     [("mo@example.com", "Mo", "Salah", "golf;wine", "", "unsubscribed")]),
    # HubSpot lifecycle stage; Salesforce's Email Opt Out.
    (("First Name,Last Name,Email,Lifecycle Stage,Email Opt Out\n"
     "Hal,Lee,hal@example.com,Customer,false\nIvy,Ng,ivy@example.com,Lead,true\n"),
     [("hal@example.com", "Hal", "Lee", "", "past_client", "subscribed"),
      ("ivy@example.com", "Ivy", "Ng", "", "prospect", "unsubscribed")]),
])
def test_other_crm_shapes(tmp_path: Path, text: str, expected: list[tuple]) -> None:
    export = tmp_path / "export.csv"
    export.write_text(text, encoding="utf-8")
    report = import_contacts(export, tmp_path / "audiences", "x")
    assert (report.imported, report.skipped) == (len(expected), ())
    with (tmp_path / "audiences" / "x.csv").open(encoding="utf-8", newline="") as f:
        got = [(r["email"], r["first_name"], r["last_name"], r["interests"],
                r["relationship"], r["status"]) for r in csv.DictReader(f)]
    assert got == expected


def test_neighbourhoods_are_spelled_as_the_feeds_spell_them(crm: Path, cli,
                                                            tmp_path: Path) -> None:
    export = tmp_path / "hoods.csv"
    export.write_text("Email,Neighborhood\na@example.com,maple HEIGHTS\n"
                      "b@example.com,Mapel Heights\n", encoding="utf-8")
    result = cli("contacts", "import", str(export), "--audience", "hoods", project=crm)
    assert result.exit_code == 0, result.output
    assert "row 3 'b@example.com': no feed covers neighbourhood 'Mapel Heights' (feeds " \
           "cover: Cedar Grove, Harbor Point, Maple Heights, Old Mill District)" in result.output
    assert {e: r["neighbourhood"] for e, r in rows(crm, "hoods").items()} == {
        "a@example.com": "Maple Heights", "b@example.com": "Mapel Heights"}


def test_a_workbook_is_refused_with_the_fix(crm: Path, cli, tmp_path: Path) -> None:
    workbook = tmp_path / "contacts.xlsx"
    workbook.write_bytes(b"PK\x03\x04" + b"\x00" * 64)
    result = cli("contacts", "import", str(workbook), "--audience", "x", project=crm)
    assert result.exit_code == 1
    assert "is a spreadsheet workbook, not CSV" in result.output and "CSV UTF-8" in result.output


def test_crm_notes_are_private_and_never_emailed(project: Path, cli, tmp_path: Path) -> None:
    """Issue 12.3: a Google `Notes` cell lands in `private_note`, which no email prints;
    only Sphere's own `note` column, or a column mapped to it, is ever emailed."""
    export = tmp_path / "google.csv"
    export.write_text(
        "Name,Given Name,Family Name,Notes,Group Membership,E-mail 1 - Value,Greeting\n"
        "Ruth Ames,Ruth,Ames,Met at open house; tight budget,Gardening,ruth@example.com,"
        "Enjoy the new garden!\n", encoding="utf-8")
    result = cli("contacts", "import", str(export), "--audience", "sphere",
                 "--map", "Greeting=note", project=project)
    assert result.exit_code == 0, result.output
    ruth = rows(project, "sphere")["ruth@example.com"]
    assert (ruth["note"], ruth["private_note"]) == ("Enjoy the new garden!",
                                                     "Met at open house; tight budget")
    assert "private_note" in (project / "audiences" / "sphere.csv").read_text(
        encoding="utf-8").splitlines()[0]
    check = cli("check", project=project)
    assert check.exit_code == 0, check.output
    assert "unknown column" not in check.output
    # Nothing a template is given carries it: the contact itself does not.
    loaded = load_audience(project / "audiences" / "sphere.csv", project)
    contact = next(c for c in loaded.contacts if c.email == "ruth@example.com")
    assert "tight budget" not in repr(contact) and not hasattr(contact, "private_note")
    sent = cli("send", "monthly-sphere", project=project)
    assert sent.exit_code == 0, sent.output
    bodies = {}
    for p in (project / "var" / "outbox").rglob("*.eml"):
        msg = email_lib.message_from_bytes(p.read_bytes(), policy=policy.default)
        bodies[str(msg["To"])] = "".join(part.get_content() for part in msg.walk()
                                         if part.get_content_maintype() == "text")
    assert bodies and all("tight budget" not in b for b in bodies.values())
    ruths = next(b for to, b in bodies.items() if "ruth@example.com" in to)
    assert "Enjoy the new garden!" in ruths and "Met at open house" not in ruths
