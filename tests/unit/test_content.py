"""Content objects, content_blocks and to_call_result (loopback.content)."""

from __future__ import annotations

import base64
import dataclasses
import enum
import json
import math
from pathlib import Path
from typing import Any, Optional

import pytest

from loopback.content import (
    CONTENT_TYPES,
    Audio,
    EmbeddedResource,
    Image,
    ResourceLink,
    Text,
    content_blocks,
    error_result,
    to_call_result,
)
from loopback.schema import to_jsonable

PNG = b"\x89PNG\r\n\x1a\n\x00\x00"
WAV = b"RIFF\x24\x00\x00\x00WAVEfmt "
OK = False  # the value of isError for a successful call


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclasses.dataclass(frozen=True)
class Output:
    """Stands in for the schema module's Output: to_call_result only reads .wrapped."""

    schema: dict[str, Any]
    wrapped: bool


WRAPPED = Output({"type": "object", "properties": {"result": {}}}, wrapped=True)
UNWRAPPED = Output({"type": "object"}, wrapped=False)


class Colour(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 2


@dataclasses.dataclass
class Point:
    x: int
    y: int
    colour: Colour = Colour.RED
    tags: tuple[str, ...] = ("a",)


# -- blocks ------------------------------------------------------------------------------


def test_text_block() -> None:
    assert Text("hi").to_block() == {"type": "text", "text": "hi"}
    assert Text("").to_block() == {"type": "text", "text": ""}


def test_text_block_with_annotations_and_meta() -> None:
    text = Text("hi", annotations={"audience": ("user",), "priority": 0.5, "lastModified": "2025-01-12T15:00:58Z"},
                meta={"com.example/id": 7})
    assert text.to_block() == {
        "type": "text",
        "text": "hi",
        "annotations": {"audience": ["user"], "priority": 0.5, "lastModified": "2025-01-12T15:00:58Z"},
        "_meta": {"com.example/id": 7},
    }


def test_image_block() -> None:
    assert Image(PNG, "image/png").to_block() == {"type": "image", "data": b64(PNG), "mimeType": "image/png"}


def test_image_from_bytearray_and_memoryview_holds_bytes() -> None:
    assert Image(bytearray(PNG), "image/png").data == PNG  # type: ignore[arg-type]
    image = Image(memoryview(PNG), "image/png")  # type: ignore[arg-type]
    assert type(image.data) is bytes and image.data == PNG


def test_audio_block() -> None:
    block = Audio(WAV, "audio/wav", annotations={"priority": 1}).to_block()
    assert block == {"type": "audio", "data": b64(WAV), "mimeType": "audio/wav", "annotations": {"priority": 1}}


def test_embedded_text_resource_block() -> None:
    resource = EmbeddedResource("file:///notes.md", text="# notes", mime_type="text/markdown")
    assert resource.to_block() == {
        "type": "resource",
        "resource": {"uri": "file:///notes.md", "mimeType": "text/markdown", "text": "# notes"},
    }


def test_embedded_blob_resource_block() -> None:
    resource = EmbeddedResource("file:///a.bin", blob=b"\x00\x01", meta={"k": "v"}, annotations={"audience": ["assistant"]})
    assert resource.to_block() == {
        "type": "resource",
        "resource": {"uri": "file:///a.bin", "blob": b64(b"\x00\x01")},
        "annotations": {"audience": ["assistant"]},
        "_meta": {"k": "v"},
    }


def test_resource_link_block() -> None:
    assert ResourceLink("file:///a.txt", "a.txt").to_block() == {
        "type": "resource_link", "uri": "file:///a.txt", "name": "a.txt"}
    full = ResourceLink("file:///a.txt", "a.txt", title="A", description="the file a", mime_type="text/plain", size=0,
                        annotations={"lastModified": "2025-01-12T15:00:58Z"}, meta={"x": 1})
    assert full.to_block() == {
        "type": "resource_link", "uri": "file:///a.txt", "name": "a.txt", "title": "A",
        "description": "the file a", "mimeType": "text/plain", "size": 0,
        "annotations": {"lastModified": "2025-01-12T15:00:58Z"}, "_meta": {"x": 1},
    }


def test_blocks_do_not_share_the_objects_mappings() -> None:
    annotations = {"priority": 0.1}
    block = Text("x", annotations=annotations).to_block()
    block["annotations"]["priority"] = 0.9
    assert annotations == {"priority": 0.1}


def test_content_types_lists_every_class() -> None:
    assert CONTENT_TYPES == (Text, Image, Audio, EmbeddedResource, ResourceLink)


def test_content_objects_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Text("x").text = "y"  # type: ignore[misc]


# -- from_path ---------------------------------------------------------------------------


def test_image_from_path_guesses_the_type(tmp_path: Path) -> None:
    path = tmp_path / "pixel.png"
    path.write_bytes(PNG)
    assert Image.from_path(path) == Image(PNG, "image/png")
    assert Image.from_path(str(path), mime_type="image/x-custom") == Image(PNG, "image/x-custom")


def test_audio_from_path_guesses_the_type(tmp_path: Path) -> None:
    path = tmp_path / "beep.wav"
    path.write_bytes(WAV)
    audio = Audio.from_path(path)
    assert audio.data == WAV and audio.mime_type.startswith("audio/")
    assert audio.mime_type in ("audio/wav", "audio/x-wav", "audio/wave")


def test_from_path_refuses_an_unknown_extension(tmp_path: Path) -> None:
    path = tmp_path / "blob.unknownext"
    path.write_bytes(PNG)
    with pytest.raises(ValueError, match="cannot guess the MIME type"):
        Image.from_path(path)
    assert Image.from_path(path, mime_type="image/png").data == PNG


@pytest.mark.parametrize("cls, name, family", [(Image, "beep.wav", "image"), (Audio, "pixel.png", "audio")])
def test_from_path_refuses_the_wrong_family(tmp_path: Path, cls: Any, name: str, family: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"x")
    with pytest.raises(ValueError, match=f"not {family}/"):
        cls.from_path(path)


def test_from_path_refuses_a_given_type_of_the_wrong_family(tmp_path: Path) -> None:
    path = tmp_path / "pixel.png"
    path.write_bytes(PNG)
    with pytest.raises(ValueError, match="audio/"):
        Audio.from_path(path, mime_type="image/png")


def test_from_path_of_a_missing_file_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        Image.from_path(tmp_path / "missing.png")


# -- validation --------------------------------------------------------------------------


@pytest.mark.parametrize("cls, args, kwargs, error, fragment", [
    (Text, (b"x",), {}, TypeError, "Text.text must be a str"),
    (Image, ("iVBORw0=", "image/png"), {}, TypeError, "must be bytes, not str"),
    (Image, ([1, 2], "image/png"), {}, TypeError, "must be bytes, not list"),
    (Image, (PNG, "audio/wav"), {}, ValueError, "image/\\* type"),
    (Image, (PNG, "png"), {}, ValueError, "type/subtype"),
    (Image, (PNG, ""), {}, ValueError, "must not be empty"),
    (Audio, (WAV, "image/png"), {}, ValueError, "audio/\\* type"),
    (Audio, ("UklGRg==", "audio/wav"), {}, TypeError, "must be bytes, not str"),
    (EmbeddedResource, ("file:///a",), {}, ValueError, "exactly one of text or blob"),
    (EmbeddedResource, ("file:///a",), {"text": "x", "blob": b"x"}, ValueError, "exactly one of text or blob"),
    (EmbeddedResource, ("file:///a",), {"blob": "x"}, TypeError, "must be bytes, not str"),
    (EmbeddedResource, ("file:///a",), {"text": 1}, TypeError, "EmbeddedResource.text must be a str"),
    (EmbeddedResource, ("",), {"text": "x"}, ValueError, "uri must not be empty"),
    (EmbeddedResource, ("file:///a",), {"text": "x", "mime_type": "text"}, ValueError, "type/subtype"),
    (ResourceLink, ("file:///a", ""), {}, ValueError, "name must not be empty"),
    (ResourceLink, (None, "a"), {}, TypeError, "uri must be a str"),
    (ResourceLink, ("file:///a", "a"), {"title": 1}, TypeError, "title must be a str"),
    (ResourceLink, ("file:///a", "a"), {"size": -1}, ValueError, "non-negative int"),
    (ResourceLink, ("file:///a", "a"), {"size": True}, ValueError, "non-negative int"),
    (ResourceLink, ("file:///a", "a"), {"size": 1.5}, ValueError, "non-negative int"),
    (Text, ("x",), {"annotations": ["user"]}, TypeError, "annotations must be a mapping"),
    (Text, ("x",), {"annotations": {"last_modified": "x"}}, ValueError, "unknown annotation"),
    (Text, ("x",), {"annotations": {"audience": "user"}}, ValueError, "audience"),
    (Text, ("x",), {"annotations": {"audience": ["model"]}}, ValueError, "audience"),
    (Text, ("x",), {"annotations": {"priority": 2}}, ValueError, "priority"),
    (Text, ("x",), {"annotations": {"priority": math.nan}}, ValueError, "priority"),
    (Text, ("x",), {"annotations": {"priority": True}}, ValueError, "priority"),
    (Text, ("x",), {"annotations": {"lastModified": 0}}, TypeError, "lastModified"),
    (Text, ("x",), {"meta": {1: "x"}}, TypeError, "meta must be a mapping with str keys"),
    (Text, ("x",), {"meta": "x"}, TypeError, "meta must be a mapping"),
])
def test_invalid_content_is_refused_on_construction(
    cls: Any, args: tuple[Any, ...], kwargs: dict[str, Any], error: type[Exception], fragment: str
) -> None:
    with pytest.raises(error, match=fragment):
        cls(*args, **kwargs)


def test_annotations_and_meta_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        Text("x", {"priority": 1})  # type: ignore[call-arg]


# -- content_blocks ----------------------------------------------------------------------


def test_one_content_object_is_one_block() -> None:
    assert content_blocks(Text("a")) == [{"type": "text", "text": "a"}]
    assert content_blocks(ResourceLink("file:///a", "a")) == [{"type": "resource_link", "uri": "file:///a", "name": "a"}]


@pytest.mark.parametrize("data", [b"\x00\xff", bytearray(b"\x00\xff"), memoryview(b"\x00\xff")])
def test_bytes_are_one_octet_stream_blob(data: Any) -> None:
    assert content_blocks(data) == [{
        "type": "resource",
        "resource": {"uri": "loopback://result", "mimeType": "application/octet-stream", "blob": b64(b"\x00\xff")},
    }]


def test_a_list_mixing_content_str_and_bytes_is_content() -> None:
    blocks = content_blocks(["caption", Image(PNG, "image/png"), b"\x01"])
    assert blocks == [
        {"type": "text", "text": "caption"},
        {"type": "image", "data": b64(PNG), "mimeType": "image/png"},
        {"type": "resource", "resource": {"uri": "loopback://result/2", "mimeType": "application/octet-stream",
                                          "blob": b64(b"\x01")}},
    ]


def test_a_tuple_of_content_objects_is_content() -> None:
    assert content_blocks((Text("a"), Text("b"))) == [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]


@pytest.mark.parametrize("value", [
    None, "text", 1, 1.5, True, {"a": 1}, [], (), ["a", "b"], ("a",), [1, 2], [Text("a"), 1], [Text("a"), None],
    [Text("a"), {"type": "text", "text": "b"}], {Text("a")}, Point(1, 2),
])
def test_plain_data_is_not_content(value: Any) -> None:
    assert content_blocks(value) is None


# -- to_jsonable (schema's, the one converter) -----------------------------------------------------------------------


def test_to_jsonable_converts_dataclasses_enums_and_tuples() -> None:
    assert to_jsonable({"p": [Point(1, 2)], "t": (1, (2,))}) == {
        "p": [{"x": 1, "y": 2, "colour": "red", "tags": ["a"]}], "t": [1, [2]]}
    assert to_jsonable(Colour.RED) == "red"
    assert type(to_jsonable(Level.HIGH)) is int
    assert to_jsonable(3) == 3


def test_to_jsonable_turns_sets_into_sorted_lists_and_refuses_what_json_cannot_hold() -> None:
    assert to_jsonable({"s": {3, 1, 2}, "f": frozenset({"b", "a"})}) == {"s": [1, 2, 3], "f": ["a", "b"]}
    with pytest.raises(TypeError, match="object"):
        to_jsonable({"x": object()})


def test_to_jsonable_refuses_a_cycle() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="Circular"):
        to_jsonable(loop)


def test_to_jsonable_allows_a_shared_object_that_is_not_a_cycle() -> None:
    shared = [1]
    assert to_jsonable([shared, shared]) == [[1], [1]]


# -- to_call_result ----------------------------------------------------------------------


def text_result(text: str, **extra: Any) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": text}], "isError": OK, **extra}


def test_str() -> None:
    assert to_call_result("é") == text_result("é")
    assert to_call_result("é", UNWRAPPED) == text_result("é")
    assert to_call_result("é", WRAPPED) == text_result("é", structuredContent={"result": "é"})


def test_none() -> None:
    assert to_call_result(None) == {"content": [], "isError": OK}
    assert to_call_result(None, WRAPPED) == {"content": [], "isError": OK, "structuredContent": {"result": None}}


def test_int_and_list_are_json_text_without_structured_content() -> None:
    assert to_call_result(7) == text_result("7")
    assert to_call_result([1, "é"]) == text_result('[1, "é"]')
    assert to_call_result(["a", "b"]) == text_result('["a", "b"]')
    assert to_call_result([]) == text_result("[]")


def test_int_and_list_with_a_wrapped_output_are_structured() -> None:
    assert to_call_result(7, WRAPPED) == text_result("7", structuredContent={"result": 7})
    assert to_call_result((1, 2), WRAPPED) == text_result("[1, 2]", structuredContent={"result": [1, 2]})
    assert to_call_result([], WRAPPED) == text_result("[]", structuredContent={"result": []})


def test_dict_is_json_text_and_structured_content() -> None:
    value = {"a": "é", "n": None}
    result = to_call_result(value)
    assert result == text_result('{"a": "é", "n": null}', structuredContent=value)
    assert to_call_result(value, UNWRAPPED) == result
    assert to_call_result(value, WRAPPED) == text_result('{"a": "é", "n": null}', structuredContent={"result": value})


def test_dict_with_an_output_holds_plain_json_values() -> None:
    result = to_call_result({"pair": (1, 2), "colour": Colour.RED}, UNWRAPPED)
    assert result["structuredContent"] == {"pair": [1, 2], "colour": "red"}
    assert type(result["structuredContent"]["pair"]) is list


def test_dataclass() -> None:
    expected = {"x": 1, "y": 2, "colour": "red", "tags": ["a"]}
    result = to_call_result(Point(1, 2))
    assert result == text_result(json.dumps(expected), structuredContent=expected)
    assert to_call_result(Point(1, 2), UNWRAPPED) == result
    assert to_call_result(Point(1, 2), WRAPPED)["structuredContent"] == {"result": expected}
    assert to_call_result([Point(1, 2)])["content"] == [{"type": "text", "text": json.dumps([expected])}]


def test_content_values_are_content_without_structured_content() -> None:
    image = Image(PNG, "image/png")
    assert to_call_result(image) == {"content": [image.to_block()], "isError": OK}
    assert to_call_result(image, WRAPPED) == {"content": [image.to_block()], "isError": OK}


def test_bytes() -> None:
    assert to_call_result(b"\x00") == {"content": content_blocks(b"\x00"), "isError": OK}


def test_mixed_list() -> None:
    value = ["see", Image(PNG, "image/png"), ResourceLink("file:///a", "a")]
    assert to_call_result(value) == {"content": content_blocks(value), "isError": OK}


def test_custom_to_jsonable_is_used() -> None:
    @dataclasses.dataclass
    class Secret:
        value: str

    result = to_call_result(Secret("x"), to_jsonable=lambda value: {"hidden": True})
    assert result == text_result('{"hidden": true}', structuredContent={"hidden": True})


@pytest.mark.parametrize("value, output", [
    (math.nan, None), (math.inf, WRAPPED), ({"x": math.nan}, None), ({"x": math.nan}, UNWRAPPED),
    ({object()}, None), ([object()], None), ({("a", "b"): 1}, None),
    ({"x": b"bytes"}, None), (Point(math.nan, 0), None), (Point(object(), 0), WRAPPED),  # type: ignore[arg-type]
])
def test_what_json_cannot_hold_is_an_error_result(value: Any, output: Optional[Output]) -> None:
    result = to_call_result(value, output)
    assert result["isError"] is True
    assert result["content"][0]["text"].startswith("the tool returned a value that cannot be sent as JSON: ")
    assert set(result) == {"content", "isError"}


def test_cycles_are_error_results_not_exceptions() -> None:
    loop: dict[str, Any] = {"p": Point(1, 2)}
    loop["self"] = loop
    assert to_call_result(loop)["isError"] is True
    assert to_call_result(loop, UNWRAPPED)["isError"] is True


def test_a_failing_to_jsonable_is_an_error_result() -> None:
    def broken(value: Any) -> Any:
        raise RuntimeError("boom")

    result = to_call_result({"a": 1}, UNWRAPPED, to_jsonable=broken)
    assert result == error_result("the tool returned a value that cannot be sent as JSON: boom")


def test_error_result() -> None:
    assert error_result("bad") == {"content": [{"type": "text", "text": "bad"}], "isError": True}
