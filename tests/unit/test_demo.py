"""The built-in demo tools, through the real registry."""

from __future__ import annotations

import datetime

from loopback.demo import demo_registry


def call(name, **arguments):
    return demo_registry().get(name).call(arguments)


def test_demo_tools_answer():
    assert call("echo", text="hi")["content"][0]["text"] == "hi"
    assert call("add", a=2, b=3)["content"][0]["text"] == "5"
    assert call("add", a=2, b=3)["structuredContent"] == {"result": 5}
    assert call("add", a=0.5, b=2)["content"][0]["text"] == "2.5"
    assert call("add", a=1e300, b=0)["content"][0]["text"] == "1e+300"  # no 301-digit integer
    assert call("word_count", text="a b")["structuredContent"] == {"characters": 3, "words": 2, "lines": 1}
    assert "python" in call("host_info")["structuredContent"]


def test_current_time_honours_the_offset():
    text = call("current_time", utc_offset_hours=5.5)["content"][0]["text"]
    assert datetime.datetime.fromisoformat(text).utcoffset() == datetime.timedelta(hours=5, minutes=30)
    assert call("current_time", utc_offset_hours=30)["isError"] is True


def test_demo_tools_are_marked_read_only():
    for tool in demo_registry().tools():
        assert tool.annotations == {"readOnlyHint": True}
