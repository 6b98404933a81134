"""The local engine on tiny random-weight Qwen2-VL and Qwen2.5-VL: inputs as the stock processor builds
them, KV prefix reuse with multimodal rotary positions, video with frame times, batching, NF4 on CPU."""

from __future__ import annotations

import pytest
from PIL import Image, ImageDraw

from mcp_vision.backend.base import ImagePart, Turn, VideoPart
from mcp_vision.backend.pytorch.families import FAMILIES
from mcp_vision.backend.pytorch.model_inputs import reusable_prefix
from mcp_vision.backend.pytorch.engine import PyTorchBackend
from mcp_vision.errors import ModelUnavailableError
from mcp_vision.settings import Settings
from mcp_vision.worker import Job

from .conftest import QWEN_FAMILIES

families = pytest.mark.parametrize("family", QWEN_FAMILIES)


def _image(color: str, size=(900, 600)) -> Image.Image:
    img = Image.new("RGB", size, color)
    ImageDraw.Draw(img).ellipse([50, 50, 400, 300], fill="white")
    return img


def _conversation(backend, conversation, script, max_tiles=2):
    history: list[Turn] = []
    results = []
    for question, parts in script:
        history.append(Turn("user", [*parts, question]) if parts and not isinstance(parts[0], Image.Image)
                       else Turn.user(question, parts, max_tiles=max_tiles))
        result = backend.chat(history, Job(), max_new_tokens=8, min_new_tokens=8, conversation=conversation)
        history.append(Turn.assistant(result.history_text))
        results.append(result)
    return results


@pytest.fixture(scope="module")
def uncached(tiny_qwen_dirs):
    backends = {}
    for family, path in tiny_qwen_dirs.items():
        backends[family] = PyTorchBackend(
            Settings(model=str(path), device="cpu", quantization="none", dtype="float32", cache_bytes=0)
        )
        backends[family].load(Job())
    return backends


@families
def test_the_family_comes_from_the_checkpoint(tiny_qwen_backends, family):
    backend = tiny_qwen_backends[family]
    assert backend.family is FAMILIES[family]
    assert backend.grounding_family == family and backend.takes_video


@families
def test_inputs_match_the_stock_processor_call(tiny_qwen_backends, family):
    """One pixel budget for every image: exactly the ids, patches and grids processor(text, images) gives."""
    import torch

    backend = tiny_qwen_backends[family]
    images = [_image("red", (900, 300)), _image("blue", (300, 700))]
    turns = [Turn("user", [ImagePart(images[0], 2), "and", ImagePart(images[1], 2), "Compare."])]
    ours = backend.build_inputs(turns)
    processor = backend._processor
    messages = [{"role": "user", "content": [
        {"type": "image"}, {"type": "text", "text": "and"}, {"type": "image"}, {"type": "text", "text": "Compare."}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    budget = 2 * 448 * 448
    stock = processor(text=[prompt], images=images, return_tensors="pt",
                      images_kwargs={"size": {"shortest_edge": 56 * 56, "longest_edge": budget}})
    assert torch.equal(ours.input_ids, stock["input_ids"])
    assert torch.equal(ours.extra["mm_token_type_ids"], stock["mm_token_type_ids"].to(torch.int32))
    assert torch.equal(torch.cat([v.pixel_values for v in ours.visuals]), stock["pixel_values"])
    assert torch.equal(torch.stack([v.grid for v in ours.visuals]), stock["image_grid_thw"])
    # Spans cover exactly each image's placeholder run, and sizes are the resized input in pixels.
    for visual, (start, end) in zip(ours.visuals, ours.spans):
        assert end - start == visual.tokens and (ours.ids[start:end] == processor.image_token_id).all()
        assert visual.size[0] * visual.size[1] <= budget


SCRIPT = [
    ("Describe this image.", [_image("red")]),
    ("What colour is the ellipse?", []),
    ("And now this one?", [_image("navy", (500, 700))]),  # a new image in a continuing session
    ("Which of the two is larger?", []),
]


@families
def test_reuse_gives_the_same_greedy_output_as_recomputing(tiny_qwen_backends, uncached, family):
    """Qwen's 3-axis rotary positions stay right across a reused prefix, a new image after it included."""
    with_reuse = _conversation(tiny_qwen_backends[family], "reuse", SCRIPT)
    without = _conversation(uncached[family], None, SCRIPT)
    assert [r.output_ids for r in with_reuse] == [r.output_ids for r in without]
    assert len(set(tuple(r.output_ids) for r in without)) > 1, "the tiny model must not repeat one answer"
    assert with_reuse[0].cached_tokens == 0
    for previous, result in zip(with_reuse, with_reuse[1:]):
        assert result.cached_tokens >= previous.prompt_tokens
    assert [r.images_encoded for r in with_reuse] == [1, 0, 1, 0]


@families
def test_a_conversation_after_another_one_is_not_given_its_positions(tiny_qwen_backends, uncached, family):
    """The positions' offset generate keeps on the model comes from the last call: a follow-up in one
    session after a call in another must not use it."""
    backend = tiny_qwen_backends[family]
    first = [("Describe.", [_image("green", (400, 900))])]
    history = [Turn.user("Describe.", first[0][1], max_tiles=2)]
    answer = backend.chat(history, Job(), max_new_tokens=8, min_new_tokens=8, conversation="A")
    _conversation(backend, "B", [("Describe.", [_image("yellow", (1200, 300))])])  # other image sizes, other offset
    history += [Turn.assistant(answer.history_text), Turn.user("More?")]
    reused = backend.chat(history, Job(), max_new_tokens=8, min_new_tokens=8, conversation="A")
    fresh = uncached[family].chat(history, Job(), max_new_tokens=8, min_new_tokens=8)
    assert reused.cached_tokens > 0 and reused.output_ids == fresh.output_ids


def _video(seconds: float) -> VideoPart:
    frames = tuple(_image(c, (320, 240)) for c in ("red", "green", "blue", "white"))
    return VideoPart(frames, tuple(i * seconds for i in range(4)), 1)


@families
def test_video_goes_in_as_a_video_with_its_frame_times(tiny_qwen_backends, uncached, family):
    backend = tiny_qwen_backends[family]
    script = [("What happens?", [_video(0.5)]), ("And at the end?", [])]
    with_reuse = _conversation(backend, "video", script)
    without = _conversation(uncached[family], None, script)
    assert [r.output_ids for r in with_reuse] == [r.output_ids for r in without]
    assert with_reuse[1].cached_tokens >= with_reuse[0].prompt_tokens
    inputs = backend.build_inputs([Turn("user", [_video(0.5), "?"])])
    (visual,) = inputs.visuals
    assert visual.kind == "video" and int(visual.grid[0]) == 2  # 4 frames, two a temporal patch
    assert (inputs.ids == backend._processor.video_token_id).sum() == visual.tokens
    kwargs = backend.family.generate_kwargs(backend._model, [inputs], inputs.prompt_len)
    if family == "qwen2_5_vl":  # the stock processor's 2 / fps for frames 0.5 s apart
        assert kwargs["second_per_grid_ts"].tolist() == [1.0]
    else:
        assert "second_per_grid_ts" not in kwargs


def test_qwen2_5_vl_positions_follow_the_frame_times(tiny_qwen_backends):
    """The same frames half a second and ten seconds apart are different videos to Qwen2.5-VL."""
    backend = tiny_qwen_backends["qwen2_5_vl"]
    slow, fast = ([Turn("user", [_video(s), "What happens?"])] for s in (10.0, 0.5))
    a = backend.chat(slow, Job(), max_new_tokens=8, min_new_tokens=8)
    b = backend.chat(fast, Job(), max_new_tokens=8, min_new_tokens=8)
    assert a.output_ids != b.output_ids


@families
def test_a_left_padded_batch_answers_as_each_alone(tiny_qwen_backends, family):
    backend = tiny_qwen_backends[family]
    conversations = [
        [Turn.user("Read this page.", [_image("red")], max_tiles=2)],
        [Turn.user("Read this page as Markdown, please.", [_image("blue", (300, 900))], max_tiles=1)],
    ]
    batch = backend.chat_batch(conversations, Job(), max_new_tokens=6, min_new_tokens=6)
    alone = [backend.chat(c, Job(), max_new_tokens=6, min_new_tokens=6) for c in conversations]
    assert [r.output_ids for r in batch] == [r.output_ids for r in alone]
    assert batch[0].prompt_tokens != batch[1].prompt_tokens  # the shorter row really was padded
    assert all(r.batch_size == 2 for r in batch)


@families
def test_tiles_are_448_pixel_equivalents_and_sizes_the_resized_input(tiny_qwen_backends, family):
    backend = tiny_qwen_backends[family]
    one = backend.chat([Turn.user("?", [_image("red", (448, 448))], max_tiles=1)], Job(), max_new_tokens=1)
    wide = backend.chat([Turn.user("?", [_image("red", (1344, 448))], max_tiles=3)], Job(), max_new_tokens=1)
    assert one.tiles == [1] and one.image_tokens == 256 and one.input_sizes == [(448, 448)]
    assert wide.tiles == [3] and wide.image_tokens == 768 and wide.input_sizes == [(1344, 448)]


def test_reusable_prefix_stops_before_a_changed_image():
    old = [1, 2, 9, 9, 9, 3, 4, 5]
    assert reusable_prefix(old, ["a"], [1, 2, 9, 9, 9, 3, 4, 6, 7], [(2, 5)], ["a"]) == 7
    assert reusable_prefix(old, ["a"], [1, 2, 9, 9, 9, 3, 4, 6, 7], [(2, 5)], ["b"]) == 2  # same tokens, other image
    assert reusable_prefix(old, ["a"], [1, 2, 9, 9], [(2, 5)], ["a"]) == 2  # never ends inside an image
    assert reusable_prefix(old, ["a"], old, [(2, 5)], ["a"]) == len(old) - 1  # one token is always computed


@families
def test_nf4_on_cpu_quantizes_the_language_model_only(tiny_qwen_dirs, family):
    import bitsandbytes as bnb
    import torch

    backend = PyTorchBackend(Settings(model=str(tiny_qwen_dirs[family]), device="cpu", quantization="nf4", dtype="bfloat16"))
    result = backend.chat([Turn.user("Describe.", [_image("red")], max_tiles=1)], Job(), max_new_tokens=4)
    model = backend._model
    quantized = [n for n, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert quantized and all(n.startswith("model.language_model.") for n in quantized)
    assert len(quantized) == 7 * 2  # every projection of both language-model layers
    for prefix in FAMILIES[family].keep_unquantized:
        kept = [m for n, m in model.named_modules() if n.startswith(prefix) and isinstance(m, torch.nn.Linear)]
        assert kept and not any(isinstance(m, bnb.nn.Linear4bit) for m in kept), prefix
    assert any(n.startswith("model.visual.merger") for n, _ in model.named_modules())  # the projector is kept too
    assert result.output_tokens >= 1


def test_an_unsupported_model_type_names_the_supported_families(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "llava"}')
    backend = PyTorchBackend(Settings(model=str(tmp_path), device="cpu"))
    with pytest.raises(ModelUnavailableError) as caught:
        backend.load(Job())
    message = str(caught.value)
    assert "'llava'" in message and "(internvl)" in message and "(qwen2_vl)" in message and "(qwen2_5_vl)" in message


@pytest.mark.parametrize("family", QWEN_FAMILIES)
def test_the_answer_keeps_the_box_markup_its_tokenizer_flags_special(tiny_qwen_backends, family):
    """Qwen's tokenizers flag <|box_start|> and its kin special (as the hub's do), so a plain
    skip_special_tokens decode left "the shape(1,2),(300,400)" and locate found no box: the engine keeps them
    and drops only the end of turn."""
    from mcp_vision.backend.local_engine import decode_answer
    from mcp_vision.grounding import MARKUP, parse_boxes

    backend = tiny_qwen_backends[family]
    backend.load(Job())
    tokenizer = backend._processor.tokenizer
    written = "<|object_ref_start|>the shape<|object_ref_end|><|box_start|>(1,2),(300,400)<|box_end|>"
    ids = tokenizer(written + "<|im_end|>", add_special_tokens=False)["input_ids"]
    assert tokenizer.added_tokens_decoder[ids[0]].special  # the premise: flagged special, as on the hub
    assert "<|box_start|>" not in tokenizer.decode(ids, skip_special_tokens=True)
    answer = decode_answer(tokenizer, ids, MARKUP[backend.grounding_family])
    assert answer == written
    assert len(parse_boxes(answer, "qwen2_vl").found) == 1
