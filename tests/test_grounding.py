"""parse_boxes on each family's box syntax, to_pixels on whole images and region crops."""

from __future__ import annotations

import pytest

from mcp_vision.grounding import (
    Found,
    Parsed,
    PixelBox,
    grounding_family,
    parse_boxes,
    to_pixels,
)


def _boxes(parsed: Parsed) -> list[tuple[str, float, float, float, float]]:
    return [(f.label, round(f.x0, 6), round(f.y0, 6), round(f.x1, 6), round(f.y1, 6)) for f in parsed.found]


# InternVL


def test_internvl_several_refs_several_boxes_with_text_around() -> None:
    answer = (
        "Here they are: <ref> the cat </ref><box>[[100, 200, 500, 800], [600, 100, 900, 400]]</box>"
        " and <ref>a dog</ref><box>[[0, 0, 1000, 1000]]</box>. Done."
    )
    parsed = parse_boxes(answer, "internvl")
    assert _boxes(parsed) == [
        ("the cat", 0.1, 0.2, 0.5, 0.8),
        ("the cat", 0.6, 0.1, 0.9, 0.4),
        ("a dog", 0.0, 0.0, 1.0, 1.0),
    ]
    assert parsed.dropped == 0


def test_internvl_box_without_ref_takes_the_previous_label() -> None:
    answer = "<box>[[10, 10, 20, 20]]</box> <ref>cup</ref><box>[[1, 2, 3, 4]]</box> also <box>[[5, 6, 7, 8]]</box>"
    assert [f.label for f in parse_boxes(answer, "internvl").found] == ["", "cup", "cup"]


def test_internvl_malformed_out_of_range_and_zero_area_are_dropped() -> None:
    answer = (
        "<ref>x</ref><box>[[100, 200, 500]]</box>"  # 3 numbers
        "<ref>y</ref><box>[[a, b, c, d]]</box>"  # words
        "<ref>z</ref><box>[[100, 200, 1200, 800]]</box>"  # out of range
        "<ref>w</ref><box>[[100, 200, 100, 800]]</box>"  # zero area
        "<ref>v</ref><box>[[-5, 200, 300, 800]]</box>"  # negative
        "<ref>ok</ref><box>[[100, 200, 300, 400]]</box>"
    )
    parsed = parse_boxes(answer, "internvl")
    assert _boxes(parsed) == [("ok", 0.1, 0.2, 0.3, 0.4)]
    assert parsed.dropped == 5


def test_internvl_swapped_corners_are_reordered() -> None:
    parsed = parse_boxes("<ref>cat</ref><box>[[500, 800, 100, 200]]</box>", "internvl")
    assert _boxes(parsed) == [("cat", 0.1, 0.2, 0.5, 0.8)]
    assert parsed.dropped == 0


def test_internvl_single_bracket_box() -> None:
    assert _boxes(parse_boxes("<ref>a</ref><box>[100, 200, 300, 400]</box>", "internvl")) == [
        ("a", 0.1, 0.2, 0.3, 0.4)
    ]


def test_no_boxes_is_empty_not_an_error() -> None:
    for family in ("internvl", "qwen2_vl"):
        assert parse_boxes("I see no cat in this image.", family) == Parsed(found=[], dropped=0)
    assert parse_boxes("No cat here.", "qwen2_5_vl", (640, 480)) == Parsed(found=[], dropped=0)
    assert parse_boxes("", "internvl") == Parsed(found=[], dropped=0)


# Qwen2-VL


def test_qwen2_vl_boxes_with_and_without_ref() -> None:
    answer = (
        "The cat is at <|object_ref_start|>the cat<|object_ref_end|><|box_start|>(100,200),(500,800)<|box_end|>"
        " and something at <|box_start|>(600, 100), (900, 400)<|box_end|>."
    )
    parsed = parse_boxes(answer, "qwen2_vl")
    assert _boxes(parsed) == [("the cat", 0.1, 0.2, 0.5, 0.8), ("", 0.6, 0.1, 0.9, 0.4)]
    assert parsed.dropped == 0


def test_qwen2_vl_malformed_out_of_range_zero_area_and_swapped() -> None:
    answer = (
        "<|box_start|>(100,200),(500)<|box_end|>"
        "<|box_start|>(one,two),(three,four)<|box_end|>"
        "<|box_start|>(100,200),(1200,800)<|box_end|>"
        "<|box_start|>(100,200),(500,200)<|box_end|>"
        "<|object_ref_start|>cat<|object_ref_end|><|box_start|>(500,800),(100,200)<|box_end|>"
    )
    parsed = parse_boxes(answer, "qwen2_vl")
    assert _boxes(parsed) == [("cat", 0.1, 0.2, 0.5, 0.8)]
    assert parsed.dropped == 4


# Qwen2.5-VL


def test_qwen2_5_vl_fenced_json_in_pixels_of_the_shown_size() -> None:
    answer = (
        "Sure.\n```json\n[\n"
        '  {"bbox_2d": [64, 96, 320, 384], "label": " cat "},\n'
        '  {"bbox_2d": [640, 480, 320, 0], "label": "dog"}\n'
        "]\n```\n"
    )
    parsed = parse_boxes(answer, "qwen2_5_vl", (640, 480))
    assert _boxes(parsed) == [("cat", 0.1, 0.2, 0.5, 0.8), ("dog", 0.5, 0.0, 1.0, 1.0)]
    assert parsed.dropped == 0


def test_qwen2_5_vl_bare_json_and_text_around() -> None:
    bare = '[{"bbox_2d": [64, 96, 320, 384], "label": "cat"}]'
    assert _boxes(parse_boxes(bare, "qwen2_5_vl", (640, 480))) == [("cat", 0.1, 0.2, 0.5, 0.8)]
    around = 'The cat: {"bbox_2d": [64, 96, 320, 384], "label": "cat"} and a cut-off one: [{"bbox_2d": [1, 2'
    assert _boxes(parse_boxes(around, "qwen2_5_vl", (640, 480))) == [("cat", 0.1, 0.2, 0.5, 0.8)]


def test_qwen2_5_vl_tolerates_small_overshoot_but_drops_out_of_range() -> None:
    answer = (
        "```json\n["
        '{"bbox_2d": [-6, 0, 650, 489], "label": "edge"},'  # within 2%: clamped to the image
        '{"bbox_2d": [0, 0, 700, 100], "label": "far"},'  # beyond 2% of 640
        '{"bbox_2d": [10, 20, 30], "label": "short"},'
        '{"bbox_2d": ["a", 20, 30, 40], "label": "word"},'
        '{"bbox_2d": [10, 20, 10, 40], "label": "flat"}'
        "]\n```"
    )
    parsed = parse_boxes(answer, "qwen2_5_vl", (640, 480))
    assert _boxes(parsed) == [("edge", 0.0, 0.0, 1.0, 1.0)]
    assert parsed.dropped == 4


def test_qwen2_5_vl_requires_shown_size() -> None:
    with pytest.raises(ValueError, match="shown_size"):
        parse_boxes('[{"bbox_2d": [1, 2, 3, 4], "label": "x"}]', "qwen2_5_vl")


def test_unknown_family_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="internvl.*qwen2_vl.*qwen2_5_vl"):
        parse_boxes("<box>[[1, 2, 3, 4]]</box>", "llava")


def test_grounding_family_from_model_type_or_name() -> None:
    assert grounding_family("internvl_chat") == "internvl"
    assert grounding_family("OpenGVLab/InternVL3-2B") == "internvl"
    assert grounding_family("qwen2_vl") == "qwen2_vl"
    assert grounding_family("Qwen/Qwen2-VL-7B-Instruct") == "qwen2_vl"
    assert grounding_family("qwen2_5_vl") == "qwen2_5_vl"
    assert grounding_family("Qwen/Qwen2.5-VL-7B-Instruct") == "qwen2_5_vl"
    assert grounding_family("llava") == "internvl"


# to_pixels


def test_the_cat_on_the_whole_image() -> None:
    found = parse_boxes("<ref>the cat</ref><box>[[100,200,500,800]]</box>", "internvl").found[0]
    box = to_pixels(found, (0, 0, 451, 300), (451, 300))
    assert box == PixelBox("the cat", x=45, y=60, width=181, height=180)
    assert box.center == (45 + 90, 60 + 90)


def test_the_cat_on_a_region_crop() -> None:
    found = parse_boxes("<ref>the cat</ref><box>[[100,200,500,800]]</box>", "internvl").found[0]
    assert to_pixels(found, (100, 50, 200, 200), (451, 300)) == PixelBox("the cat", x=120, y=90, width=80, height=120)


def test_to_pixels_clips_at_the_image_edge() -> None:
    # A region shown past the right and bottom edges (a crop padded out): the box is cut at the image.
    found = Found("edge", 0.5, 0.5, 1.0, 1.0)
    box = to_pixels(found, (300, 150, 200, 200), (451, 300))
    assert box == PixelBox("edge", x=400, y=250, width=51, height=50)


def test_to_pixels_box_outside_the_image_is_none() -> None:
    found = Found("gone", 0.5, 0.5, 1.0, 1.0)
    assert to_pixels(found, (300, 200, 200, 200), (451, 300)) is None


def test_to_pixels_does_not_round_float_noise_outwards() -> None:
    # 0.2 * 300 and 0.8 * 300 are 60.000000000000004 and 240.00000000000003 in floats.
    box = to_pixels(Found("a", 0.0, 0.2, 1.0, 0.8), (0, 0, 300, 300), (300, 300))
    assert box == PixelBox("a", x=0, y=60, width=300, height=180)
