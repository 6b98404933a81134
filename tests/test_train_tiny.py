"""bench/train_tiny.py, the script that made tests/models/trained_internvl: it still runs, a stage started from a
checkpoint keeps that checkpoint's tokenizer, and the sine-cosine positions are what they claim to be."""

from __future__ import annotations

import argparse
import json

import pytest

from bench.train_tiny import parse_mix

from .support.trained import TRAINED_DIR


def test_a_stage_mix_is_parsed_and_bad_ones_are_refused():
    assert parse_mix("kind=2, count=1.5,box") == {"kind": 2.0, "count": 1.5, "box": 1.0}
    for bad, words in (("shapes=2", "unknown task 'shapes'"), ("kind=two", "must be a number"), ("kind=0", "positive")):
        with pytest.raises(argparse.ArgumentTypeError, match=words):
            parse_mix(bad)


def test_sincos_positions_tell_every_patch_apart_at_the_patch_embeddings_scale():
    import torch
    from transformers import AutoProcessor, InternVLForConditionalGeneration

    from bench.synthetic import Tasks
    from bench.train_tiny import sincos_positions

    model = InternVLForConditionalGeneration.from_pretrained(TRAINED_DIR, dtype=torch.float32)
    processor = AutoProcessor.from_pretrained(TRAINED_DIR)
    table = model.model.vision_tower.embeddings.position_embeddings
    cls_before = table[0, 0].detach().clone()
    scale = sincos_positions(model, processor, seed=0)
    patches = table[0, 1:].detach()
    assert torch.equal(table[0, 0].detach(), cls_before)  # the class token's position is left alone
    distances = torch.cdist(patches, patches) + torch.eye(len(patches)) * 1e9
    assert float(distances.min()) > 0.1 * scale  # no two patches share a position
    pixels = processor.image_processor(images=Tasks(1).sample("colour", max_tiles=1).images, return_tensors="pt")
    with torch.no_grad():
        spread = float(model.model.vision_tower.embeddings.patch_embeddings(pixels["pixel_values"]).std())
    assert 0.3 < float(patches.std()) / spread < 3  # as large as what the patches carry, not 3,000 times smaller


def test_the_script_trains_and_a_later_stage_keeps_its_tokenizer(tmp_path):
    from bench.train_tiny import main

    first, second = tmp_path / "first", tmp_path / "second"
    assert main([str(first), "--steps", "2", "--batch", "2", "--mix", "colour=1", "--one-tile", "--held-out", "1"]) == 0
    record = json.loads((first / "training.json").read_text())
    assert record["steps"] == 2 and set(record["held_out"]) >= {"colour", "box"}
    assert main([str(second), "--init", str(first), "--steps", "1", "--batch", "2", "--mix", "kind=1",
                 "--one-tile", "--held-out", "1", "--position-init", "sincos"]) == 0
    assert (second / "tokenizer.json").read_bytes() == (first / "tokenizer.json").read_bytes()
    record = json.loads((second / "training.json").read_text())
    assert record["init"] == str(first) and record["position_init"] == "sincos" and record["position_scale"] > 0


def test_rescale_vision_keeps_the_answers_and_lets_the_layers_weigh_in():
    """The division leaves the model's function alone (LayerNorms read every layer's input) while the tower's
    residual drops to std 1, and the embeddings' learning rate is scaled down by the same factor."""
    import torch
    from transformers import AutoProcessor, InternVLForConditionalGeneration

    from bench.synthetic import Tasks
    from bench.train_tiny import encode, model_inputs, param_groups, rescale_vision
    from mcp_vision.backend.pytorch.families import family_for

    model = InternVLForConditionalGeneration.from_pretrained(TRAINED_DIR, dtype=torch.float32).eval()
    processor = AutoProcessor.from_pretrained(TRAINED_DIR)
    ids, _, visuals = encode(family_for("internvl"), processor, Tasks(3).sample("box", max_tiles=1), answer=False)
    inputs = model_inputs(processor, ids[None], torch.ones_like(ids)[None], visuals)
    pixels = inputs["pixel_values"]
    with torch.no_grad():
        before = model(**inputs).logits
    factor = rescale_vision(model)
    with torch.no_grad():
        after = model(**inputs).logits
        residual = model.model.vision_tower.embeddings(pixels)
    residual = residual[0] if isinstance(residual, tuple) else residual
    assert factor > 10  # the committed tower's embeddings are far above std 1
    assert 0.3 < float(residual.std()) < 3
    assert torch.allclose(before, after, atol=0.05 * float(before.abs().max()))
    assert torch.equal(before.argmax(-1), after.argmax(-1))
    groups = param_groups(model, 1e-3)
    assert [len(g["params"]) for g in groups][1] == len(list(model.model.vision_tower.embeddings.parameters()))
    assert groups[1]["lr_scale"] == pytest.approx(1 / factor)


def test_the_digit_curriculum_is_a_stage_task_not_a_held_out_one():
    from bench.synthetic import TASKS, Tasks

    assert parse_mix("digit=2,number=1") == {"digit": 2.0, "number": 1.0}
    sample = Tasks(0).sample("digit")
    assert sample.answer in "0123456789" and len(sample.answer) == 1 and "digit" not in TASKS


def test_the_script_trains_a_qwen2_vl_in_its_own_box_syntax(tmp_path):
    from bench.synthetic import Tasks, answered_box, box_answer
    from bench.train_tiny import main

    answer = box_answer((10, 20, 110, 220), (200, 400), family="qwen2_vl")
    assert answer == "<|object_ref_start|>the shape<|object_ref_end|><|box_start|>(50,50),(550,550)<|box_end|>"
    assert answered_box(answer, "qwen2_vl") == (0.05, 0.05, 0.55, 0.55)
    assert Tasks(0, family="qwen2_vl").sample("box").answer.startswith("<|object_ref_start|>")
    out = tmp_path / "qwen"
    assert main([str(out), "--family", "qwen2_vl", "--steps", "2", "--batch", "2", "--mix", "box=1,colour=1",
                 "--held-out", "1"]) == 0
    record = json.loads((out / "training.json").read_text())
    assert record["family"] == "qwen2_vl" and "video" not in record["held_out"]
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "qwen2_vl" and config["vision_config"]["patch_size"] == 28
    with pytest.raises(SystemExit):
        main([str(tmp_path / "again"), "--init", str(out), "--steps", "1", "--rescale-vision"])
