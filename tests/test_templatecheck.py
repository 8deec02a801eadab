"""Templates as strict as subjects, and a footer no override can take away (issue 12.4,
12.5): `sphere check` names the user's own file and line; `send` refuses."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.models import Campaign, Contact, Plan, PlannedEmail
from pipeline.rendering.render import Renderer, TemplateError
from tests.conftest import NOW, REPO

BUILT_IN = REPO / "templates"


def override(project: Path, name: str, old: str, new: str) -> Path:
    """Copy a built-in template into the project with one change."""
    source = (BUILT_IN / name).read_text(encoding="utf-8")
    assert old in source, old
    path = project / "templates" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source.replace(old, new), encoding="utf-8")
    return path


def outbox(project: Path) -> list[Path]:
    return list((project / "var" / "outbox").rglob("*.eml"))


def test_undefined_names_are_check_errors_at_the_source_line(project: Path, cli) -> None:
    override(project, "newsletter.mjml", "<p>Hi {{ first_name }},</p>",
             "<p>Hi {{ contact.nickname }},</p>")
    override(project, "partials/article_card.mjml", "{{ pick.article.title }}</a>",
             "{{ pick.article.titel }}</a>")
    # An unknown filter in a branch Jinja only checks when the branch runs.
    override(project, "partials/tip_box.mjml", "{{ tip.body }}", "{{ tip.body|upcase }}")
    override(project, "thank_you.txt", "Congratulations again",
             "{{ greeting }} Congratulations again")
    result = cli("check", project=project)
    assert result.exit_code == 1
    err = result.stderr
    # Line 9 of the user's 31-line newsletter.mjml, not line 46 of the compiled HTML.
    assert "templates/newsletter.mjml:9: contact.nickname: no such attribute (used by " \
           "campaigns.monthly-sphere)" in err
    assert "contact has: email, first_name" in err
    assert "templates/partials/article_card.mjml:9: pick.article.titel: no such " \
           "attribute" in err
    assert "templates/partials/tip_box.mjml:6: upcase: no such filter" in err
    assert "templates/thank_you.txt:1: greeting: undefined name (used by " \
           "drips.after-closing.steps[0].template)" in err
    sent = cli("send", "monthly-sphere", project=project)
    assert sent.exit_code == 1 and "nothing was run" in sent.stderr
    assert outbox(project) == []


def test_a_private_note_cannot_be_printed(project: Path, cli) -> None:
    override(project, "newsletter.txt", "{{ intro_text }}",
             "{{ intro_text }} {{ contact.private_note }}")
    result = cli("check", project=project)
    assert result.exit_code == 1
    assert "templates/newsletter.txt:3: contact.private_note: private notes are never " \
           "printed in an email" in result.stderr


def test_render_never_greets_with_a_blank(project: Path) -> None:
    """Rendering is strict too: no "Hi ," even when nobody ran `sphere check`."""
    override(project, "newsletter.mjml", "<p>Hi {{ first_name }},</p>",
             "<p>Hi {{ contact.nickname }},</p>")
    config = load_config(project)
    renderer = Renderer(project, config.sender, "secret")
    campaign = Campaign(name="n", kind="newsletter", audiences=("sphere",),
                        schedule="0 9 1 * *", subject="Hello")
    contact = Contact(email="ann@example.com", first_name="Ann")
    planned = PlannedEmail(contact, ())
    plan = Plan(campaign, "n@1", "2026-11-01T09:00:00-08:00", (planned,))
    with pytest.raises(TemplateError, match="nickname"):
        renderer.render(plan, planned, NOW)


@pytest.mark.parametrize("footer", [
    # The unsubscribe link and the address simply left out.
    '<mj-section><mj-column><mj-text>Thanks for reading!</mj-text></mj-column></mj-section>',
    # Both present in the source, but nobody can see them.
    ('<mj-section><mj-column><mj-text><div style="display: none">{{ sender.postal_address }}'
    ' <a href="{{ unsubscribe_url }}">Unsubscribe</a></div></mj-text></mj-column>'
    '</mj-section>'),
])
def test_a_footer_override_cannot_drop_its_promises(project: Path, cli, footer: str) -> None:
    path = project / "templates" / "partials" / "footer.mjml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(footer + "\n", encoding="utf-8")
    result = cli("check", project=project)
    assert result.exit_code == 1
    assert "templates/partials/footer.mjml: footer: the HTML email has no visible " \
           "unsubscribe link and no postal address (used by campaigns.monthly-sphere" \
           in result.stderr
    sent = cli("send", "monthly-sphere", project=project)
    assert sent.exit_code == 1, sent.output
    assert "templates/partials/footer.mjml" in sent.stderr
    assert outbox(project) == []


def test_the_text_twin_keeps_its_footer_too(project: Path, cli) -> None:
    override(project, "partials/signature.txt", "Unsubscribe: {{ unsubscribe_url }}", "")
    result = cli("check", project=project)
    assert result.exit_code == 1
    assert "templates/partials/signature.txt: footer: the text email has no unsubscribe " \
           "link" in result.stderr


def test_every_email_is_guarded_even_without_the_preflight(project: Path) -> None:
    """A footer shown to some people only is caught email by email at render time."""
    override(project, "partials/footer.mjml", "<a href=\"{{ unsubscribe_url }}\"",
             "<a href=\"{% if contact.first_name != 'Ann' %}{{ unsubscribe_url }}"
             "{% endif %}\"")
    config = load_config(project)
    renderer = Renderer(project, config.sender, "secret")
    campaign = Campaign(name="n", kind="newsletter", audiences=("sphere",),
                        schedule="0 9 1 * *", subject="Hello")
    planned = PlannedEmail(Contact(email="ann@example.com", first_name="Ann"), ())
    plan = Plan(campaign, "n@1", "2026-11-01T09:00:00-08:00", (planned,))
    with pytest.raises(TemplateError, match="no unsubscribe link"):
        renderer.render(plan, planned, NOW + dt.timedelta(days=1))


def test_the_sample_project_passes(project: Path, cli) -> None:
    result = cli("check", project=project)
    assert result.exit_code == 0, result.stderr


def test_sphere_templates_lists_builtins_and_overrides(tmp_path: Path, cli) -> None:
    """Issue 12.10: the README `sphere init` writes points at `sphere templates`."""
    project = tmp_path / "mine"
    assert cli("init", str(project)).exit_code == 0
    assert "`sphere templates`" in (project / "templates" / "README.txt").read_text()
    (project / "templates" / "partials").mkdir()
    (project / "templates" / "partials" / "footer.mjml").write_text("<mj-section/>\n")
    result = cli("templates", project=project)
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line.split()[1:] for line in result.output.splitlines()
             if line.startswith("  ")}
    assert lines["newsletter.mjml"] == ["built-in", "campaigns.monthly-sphere"]
    assert lines["partials/footer.mjml"][0] == "overridden"
    assert lines["thank_you.txt"] == ["built-in", "drips.after-closing.steps[0].template"]
    assert lines["referral_update.mjml"][0] == "built-in"


def test_preview_a_drip_and_each_step(project: Path, cli) -> None:
    """Issue 12.10: `sphere preview after-closing` (a drip) was "no such campaign"."""
    result = cli("preview", "after-closing", project=project)
    assert result.exit_code == 0, result.output
    folder = project / "var" / "preview" / "after-closing"
    steps = sorted(p.name for p in folder.iterdir())
    assert steps == ["step-1-thank_you", "step-2-settling_in", "step-3-home_anniversary"]
    zoe = (folder / "step-3-home_anniversary" / "zoe.hartmann_example.com.txt").read_text()
    assert "years ago you got the keys in Maple Heights" in zoe  # closed 2021-05-14
    assert "Unsubscribe: https://" in zoe
    one = cli("preview", "after-closing", "--step", "2", "--out", str(project / "p2"),
              project=project)
    assert one.exit_code == 0 and [p.name for p in (project / "p2").iterdir()] == \
        ["step-2-settling_in"]
    bad = cli("preview", "after-closing", "--step", "4", project=project)
    assert bad.exit_code == 1 and "no step 4 (steps are 1 to 3)" in bad.stderr
    # A referral drip shows the referrals recorded, else a sample one.
    sample = cli("preview", "referral-thanks", project=project)
    assert sample.exit_code == 0 and "wrote 1 email(s)" in sample.output
    assert cli("referral", "add", "--by", "zoe.hartmann@example.com", "--name",
               "the Garcias", project=project).exit_code == 0
    cli("preview", "referral-thanks", project=project)
    page = (project / "var" / "preview" / "referral-thanks" / "step-1-referral_thank_you" /
            "zoe.hartmann_example.com.txt").read_text()
    assert "Thank you for introducing me to the Garcias" in page
