"""Rule files named by a message resolve only inside the message's folder (or ``HERALD_RULES_ROOT``)."""

from __future__ import annotations

import pytest

from engine.errors import MessageFileError
from tests.conftest import EXAMPLES

BASE = (EXAMPLES / "summer-sale.message.yaml").read_text()
RULE_FILES = ("eligibility.yaml", "personalization.yaml", "channel-priority.yaml")


@pytest.fixture
def campaign(tmp_path):
    """A message folder ``campaign/`` with the sample rule files, and a sibling ``shared/`` copy of them."""
    folder, shared = tmp_path / "campaign", tmp_path / "shared"
    for d in (folder, shared):
        d.mkdir()
        for name in RULE_FILES:
            (d / name).write_text((EXAMPLES / name).read_text())
    return folder


def write(folder, personalization: str):
    path = folder / "m.message.yaml"
    path.write_text(BASE.replace("personalization: personalization.yaml", f"personalization: {personalization}"))
    return path


def problems(herald, path):
    with pytest.raises(MessageFileError) as info:
        herald.load_message(path)
    return [str(p) for p in info.value.problems]


def test_rule_files_inside_the_message_folder_load(herald, campaign):
    (campaign / "sub").mkdir()
    (campaign / "sub" / "p.yaml").write_text((EXAMPLES / "personalization.yaml").read_text())
    msg = herald.load_message(write(campaign, "sub/../sub/p.yaml"))
    assert msg.rulesets["personalization"].name == "summer-sale-personalization"


def test_dot_dot_out_of_the_message_folder_is_an_error_at_its_line(herald, campaign, monkeypatch):
    monkeypatch.delenv("HERALD_RULES_ROOT", raising=False)
    path = write(campaign, "../shared/personalization.yaml")
    (msg,) = problems(herald, path)
    assert msg.startswith(f"{path}:10:3: rules.personalization: rule file '../shared/personalization.yaml' is outside "
                          f"the message's folder {campaign.resolve()}")
    assert "HERALD_RULES_ROOT" in msg


def test_an_absolute_path_outside_the_folder_is_an_error(herald, campaign, monkeypatch):
    monkeypatch.delenv("HERALD_RULES_ROOT", raising=False)
    path = write(campaign, "/etc/passwd")
    (msg,) = problems(herald, path)
    assert msg.startswith(f"{path}:10:3: rules.personalization: rule file '/etc/passwd' is outside")


def test_a_symbolic_link_leading_outside_is_an_error(herald, campaign, monkeypatch):
    monkeypatch.delenv("HERALD_RULES_ROOT", raising=False)
    (campaign / "link.yaml").symlink_to(campaign.parent / "shared" / "personalization.yaml")
    (msg,) = problems(herald, write(campaign, "link.yaml"))
    assert "rule file 'link.yaml' is outside the message's folder" in msg


def test_a_configured_rules_root_allows_a_shared_folder_and_confines_to_it(herald, campaign, monkeypatch):
    monkeypatch.setenv("HERALD_RULES_ROOT", str(campaign.parent))
    msg = herald.load_message(write(campaign, "../shared/personalization.yaml"))
    assert msg.rulesets["personalization"].name == "summer-sale-personalization"
    path = write(campaign, "../../outside.yaml")
    (msg,) = problems(herald, path)
    assert msg.startswith(f"{path}:10:3: rules.personalization: rule file '../../outside.yaml' is outside the rules "
                          f"root {campaign.parent.resolve()} (HERALD_RULES_ROOT)")
