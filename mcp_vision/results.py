"""What the tools return: pydantic models, so every tool has an outputSchema and structured content."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, PrivateAttr


class ImageInfo(BaseModel):
    width: int = Field(description="Width in pixels after EXIF orientation.")
    height: int = Field(description="Height in pixels after EXIF orientation.")
    format: str = Field(description="Image format detected from the bytes, e.g. PNG or JPEG.")


class Usage(BaseModel):
    prompt_tokens: int = Field(description="Tokens in the whole prompt, history and image tokens included.")
    image_tokens: int = Field(description="Tokens that carry image content.")
    output_tokens: int = Field(description="Tokens generated for the answer.")
    cached_tokens: int = Field(
        default=0, description="Prompt tokens reused from the session's cache instead of being computed again."
    )


class BudgetReport(BaseModel):
    """How the call's time budget shaped it."""

    seconds: float | None = Field(description="The call's time budget in seconds (None: no budget).")
    tiles: int | None = Field(default=None, description="Tiles per image used (None: no images).")
    frames: int | None = Field(default=None, description="Video frames used (video_qa).")
    max_new_tokens: int = Field(description="Longest answer allowed.")
    reduced: bool = Field(
        description="True when tiles, frames or answer length were reduced to fit the budget: call again with a "
        "larger time_budget for more."
    )


class Viewable(BaseModel):
    """A result the viewer (MCP Apps) can show. `_viewer` names the previews of its media by resource URI,
    for the result's `_meta`: never part of the structured content or the text, so the model never sees it."""

    _viewer: dict[str, Any] | None = PrivateAttr(default=None)


class ModelAnswer(Viewable):
    """Fields every answer from the model carries."""

    answer: str = Field(description="The model's answer.")
    session_id: str = Field(description="Pass this to follow_up (or any tool) to continue the conversation.")
    model: str = Field(description="The model that answered.")
    engine: str = Field(
        default="", description="The engine that ran it: pytorch, openvino or remote (the PyTorch engine answers "
        "while the model converts to OpenVINO on a CPU)."
    )
    usage: Usage
    finish_reason: Literal["stop", "length", "time"] = Field(
        description="'length' when the answer was cut at max_new_tokens: ask again with a larger value; 'time' "
        "when it was cut at the call's time budget: ask again with a larger time_budget."
    )
    seconds: float = Field(description="Wall-clock seconds for this call, model loading included.")
    dropped_turns: int = Field(
        default=0,
        description="Oldest exchanges dropped from the session (with their media) to fit the model's context "
        "or the session's bounds during this call.",
    )
    budget: BudgetReport | None = Field(default=None, description="How the time budget shaped this call.")


class Region(BaseModel):
    """A rectangle of an image in its original pixels (after EXIF orientation), origin top-left."""

    x: int = Field(description="Left edge in pixels.", ge=0)
    y: int = Field(description="Top edge in pixels.", ge=0)
    width: int = Field(description="Width in pixels.", ge=1)
    height: int = Field(description="Height in pixels.", ge=1)


class DescribeImageResult(ModelAnswer):
    image: ImageInfo
    region: Region | None = Field(default=None, description="The part of the image that was read (original pixels).")
    tiles: int = Field(description="448x448 tiles the image was split into (a thumbnail tile included).")
    load_seconds: float = Field(description="Seconds spent loading the model during this call (0 once loaded).")


class FollowUpResult(ModelAnswer):
    turns: int = Field(description="Question/answer exchanges in the session, this one included.")


class PageRegion(BaseModel):
    """A part of a 'layout' page that shows text its text layer lacks, read by the model."""

    bbox: list[float] = Field(
        description="[x0, y0, x1, y1] in points of the page as displayed, origin top-left (72 points an inch)."
    )
    source: Literal["vector", "image", "ink"] = Field(
        description="What draws the text there: 'vector' paths (glyphs outlined), an 'image' (a picture of text, a "
        "scan), or other 'ink' (an annotation, a font without character codes)."
    )
    method: Literal["vision"] = Field(default="vision", description="'vision': read by the model from the render.")
    text: str = Field(description="What the model read there; also placed in the page's text, in reading order.")


class PageFigure(BaseModel):
    """A figure of a 'layout' page (a chart, a diagram, a photograph), described by the model (`figures: true`)."""

    bbox: list[float] = Field(
        description="[x0, y0, x1, y1] in points of the page as displayed, origin top-left (72 points an inch)."
    )
    caption: str | None = Field(default=None, description="The figure's caption as the page prints it (null: none).")
    method: Literal["vision"] = Field(default="vision", description="'vision': described by the model from the render.")
    description: str = Field(
        description="The model's description; also placed in the page's text where the figure stands, as a quotation "
        "marked 'Figure, described by the model'."
    )


class PageText(BaseModel):
    page: int = Field(description="1-based page number.")
    method: Literal["layout", "text_layer", "vision"] = Field(
        description="'layout': the PDF's own text arranged as Markdown by a layout model (headings, paragraphs in "
        "reading order, lists, tables; running header and footer apart), with the model's reading of any region "
        "the text layer lacks (see regions); 'text_layer': the PDF's own text exactly as stored, unarranged; "
        "'vision': the page was rendered and read by the model (a page whose text layer covers only part of what "
        "it shows is read whole, its text layer given to the model as a hint)."
    )
    text: str
    regions: list[PageRegion] | None = Field(
        default=None,
        description="'layout' pages: the parts whose text is drawn but missing from the text layer (outlined "
        "glyphs, pictures of text), read by the model and merged into text (null: none).",
    )
    figures: list[PageFigure] | None = Field(
        default=None,
        description="'layout' pages read with figures: true: each figure described by the model (null: none, or not "
        "asked for).",
    )
    header: str | None = Field(
        default=None, description="'layout' pages: the running header, kept out of text (null: the page has none)."
    )
    footer: str | None = Field(
        default=None,
        description="'layout' pages: the running footer and page number, kept out of text (null: the page has none).",
    )


class OcrDocumentResult(Viewable):
    pages: list[PageText]
    region: Region | None = Field(default=None, description="The part of the page image that was read (original pixels).")
    page_count: int = Field(description="Pages in the whole document.")
    session_id: str = Field(description="Pass this to follow_up to ask about the pages read.")
    model: str
    truncated: bool = Field(
        description="True when not every page asked for was read (the output cap or the time budget); see note "
        "and next_pages."
    )
    next_pages: str | None = Field(
        default=None, description="When truncated: the exact `pages` value that asks for the rest."
    )
    note: str | None = Field(
        default=None,
        description="What was left out and how to ask for it (when truncated), and pages whose forced text layer was empty.",
    )
    seconds: float


class ImageDiff(BaseModel):
    image: int = Field(description="1-based index of the image compared against image 1.")
    similarity: float = Field(description="1.0 means pixel-identical after resizing to a common size.")
    regions: list[Region] = Field(description="Changed regions in this image's original pixel coordinates.")


class CompareImagesResult(ModelAnswer):
    diffs: list[ImageDiff] = Field(description="Measured pixel differences of each image against image 1.")
    images: list[ImageInfo]
    tiles: list[int] = Field(description="Tiles each image was split into.")


class Point(BaseModel):
    x: int
    y: int


class FoundBox(BaseModel):
    label: str = Field(description="What the box holds, in the model's words (the target, or an object's name).")
    x: int = Field(description="Left edge in pixels of the original image.")
    y: int = Field(description="Top edge in pixels of the original image.")
    width: int
    height: int
    center: Point = Field(description="The box's center: where to click.")


COORDINATE_FRAME = "pixels of the original image, origin top-left, x right, y down, after EXIF orientation"


class LocateResult(ModelAnswer):
    boxes: list[FoundBox] = Field(description="What was found, in pixels of the original image; empty: nothing found.")
    coordinate_frame: str = Field(default=COORDINATE_FRAME, description="The frame every box is in.")
    image: ImageInfo
    region: Region | None = Field(default=None, description="The part of the image that was searched (original pixels).")
    tiles: int = Field(description="448x448 tiles the searched image was split into.")
    dropped_boxes: int = Field(
        default=0, description="Boxes the model wrote out of range or malformed, left out (never an error)."
    )


class FrameInfo(BaseModel):
    index: int = Field(description="1-based frame label as shown to the model (Frame1, Frame2, ...).")
    timestamp: float = Field(description="Seconds from the start of the video.")


class VideoQaResult(ModelAnswer):
    frames: list[FrameInfo]
    duration: float = Field(description="Duration of the video in seconds.")
    width: int
    height: int


__all__ = [
    "ImageInfo",
    "Usage",
    "BudgetReport",
    "Viewable",
    "ModelAnswer",
    "DescribeImageResult",
    "FollowUpResult",
    "PageText",
    "OcrDocumentResult",
    "PageFigure",
    "PageRegion",
    "Region",
    "ImageDiff",
    "CompareImagesResult",
    "FrameInfo",
    "Point",
    "FoundBox",
    "LocateResult",
    "COORDINATE_FRAME",
    "VideoQaResult",
]
