"""Phone numbers written in national form are read in the region the channels set (``default_region``): both
audience readers normalise them to E.164 with their line type, the same way; and the channels' column form
trusts the reader's line type instead of parsing the number again."""

from __future__ import annotations

import polars as pl
import pytest

from engine.audience import read_audience
from engine.columnar import read_frame
from engine.columnar.decisions import customer_of
from engine.errors import PluginConflict
from engine.model import Reachability
from engine.runtime import Herald
from plugins import DEFAULT_PLUGINS


def _herald(**sms):
    return Herald.build(DEFAULT_PLUGINS, settings={"plugins.channels.sms": sms}, entry_points=False)


def _both(path, herald):
    rows = [(c.id, c.attributes) for c in read_audience(path, herald.catalogue).customers]
    frame = read_frame(path, herald.catalogue).frame
    return rows, [(c.id, c.attributes) for c in map(customer_of, frame.iter_rows(named=True))]


def test_national_numbers_are_normalised_in_the_default_region_by_both_readers(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("id,phone\nc1,07400 123456\nc2,020 7946 0958\nc3,+91 98123 45678\nc4,0740\nc5,447400123456\n")
    rows, columns = _both(path, _herald(default_region="GB"))
    assert rows == columns
    assert rows[:3] == [("c1", {"phone": "+447400123456", "handle_type.phone": "mobile"}),
                        ("c2", {"phone": "+442079460958", "handle_type.phone": "fixed_line"}),
                        ("c3", {"phone": "+919812345678", "handle_type.phone": "mobile"})]
    assert rows[3] == ("c4", {"phone": "0740", "handle_error.phone": "phone '0740' is not a valid number"})
    # without a default region, national numbers stay malformed (as before)
    rows, columns = _both(path, _herald())
    assert rows == columns
    assert rows[0] == ("c1", {"phone": "07400 123456", "handle_error.phone":
                              "phone '07400 123456' is not in international form (+ and country code)"})


def test_sms_takes_the_national_mobile_and_refuses_the_landline(tmp_path):
    herald = _herald(default_region="GB")
    path = tmp_path / "a.csv"
    path.write_text("id,phone\nc1,07400 123456\nc2,020 7946 0958\n")
    sms = herald.registry.channel("sms")
    frame = read_frame(path, herald.catalogue).frame
    message = type("M", (), {"delivery": type("D", (), {"send_to_dnd": False})()})()
    columnar = frame.select(sms.reachability_expr(message)).to_series().to_list()
    per_row = [str(sms.reachability(customer_of(r), message)) for r in frame.iter_rows(named=True)]
    assert columnar == per_row == [Reachability.VALID.value, Reachability.INVALID.value]


def test_channels_disagreeing_on_the_region_is_refused():
    with pytest.raises(PluginConflict, match="contact field 'phone' is registered by plugin 'plugins.channels.sms' "
                       "and by plugin 'plugins.channels.call_task' reading numbers without \\+ in different regions "
                       "\\(GB, IN\\); give them the same default_region"):
        Herald.build(DEFAULT_PLUGINS, settings={"plugins.channels.sms": {"default_region": "GB"},
                                                "plugins.channels.call_task": {"default_region": "IN"}},
                     entry_points=False)


def test_the_column_form_trusts_the_readers_line_type():
    """A number the reader typed is not parsed again: its recorded type decides (here deliberately wrong, to
    show which one is read); an untyped number (a frame built otherwise) is parsed."""
    sms = _herald().registry.channel("sms")
    message = type("M", (), {"delivery": type("D", (), {"send_to_dnd": False})()})()
    frame = pl.DataFrame({"customer.id": ["a", "b", "c"],
                          "customer.phone": ["+447400123456", "+447400123456", "+442079460958"],
                          "customer.handle_type.phone": ["fixed_line", None, None]})
    assert frame.select(sms.reachability_expr(message)).to_series().to_list() == ["invalid", "valid", "invalid"]


def test_the_ad_channels_region_reads_phone_numbers_too():
    """The ad channels match on ``phone`` and register it with their ``default_region``: the readers read
    numbers without + there, and a different region on SMS is refused like any two channels disagreeing."""
    herald = Herald.build(DEFAULT_PLUGINS, settings={"plugins.channels.ads": {"default_region": "IN"}},
                          entry_points=False)
    assert herald.catalogue.regions == {"phone": "IN"}
    with pytest.raises(PluginConflict, match="registered by plugin 'plugins.channels.sms' and by plugin "
                                             "'plugins.channels.ads' reading numbers without \\+ in different"):
        Herald.build(DEFAULT_PLUGINS, settings={"plugins.channels.sms": {"default_region": "GB"},
                                                "plugins.channels.ads": {"default_region": "IN"}},
                     entry_points=False)
