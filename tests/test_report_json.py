"""The report's embedded metrics are JSON a page script (or any reader) can parse (issue 15:
found by the browser test: HTML-escaped quotes inside <script> are not decoded)."""
import json

from sparke_lab.report import _script_json


def test_script_json_is_plain_json_and_cannot_close_the_script():
    data = {"sparke": {"cond_vendi": 1.5, "note": 'a "quoted" </script><b>'}}
    text = _script_json(data)
    assert "</" not in text and "&quot;" not in text
    assert json.loads(text) == data
