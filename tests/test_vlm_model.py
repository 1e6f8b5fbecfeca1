"""VJEPA2VLMForConditionalGeneration on tiny random Qwen2 / Llama backbones, plus real-size configs on `meta`."""

import pytest
import torch
from transformers import AutoConfig, AutoModelForImageTextToText, LlamaForCausalLM, Qwen2ForCausalLM

from vjepa_vlm import VJEPA2Config, VJEPA2Model, VJEPA2VLMConfig, VJEPA2VLMForConditionalGeneration

torch.set_num_threads(1)
IMAGE, VIDEO = 3, 4


def tiny_model(preset="vjepa2-tiny-qwen2", seed=0, **overrides):
    torch.manual_seed(seed)
    config = VJEPA2VLMConfig.from_preset(preset, **overrides)
    return VJEPA2VLMForConditionalGeneration(config)


def multimodal_batch(config, num_frames=4, seed=1):
    """Two samples: one with an image (thumbnail + 2 tiles) then a video, one with only a video."""
    generator = torch.Generator().manual_seed(seed)
    per_tubelet = config.tokens_per_tubelet
    crop = config.vision_config.crop_size
    image_tokens, video_tokens = 3 * per_tubelet, num_frames // 2 * per_tubelet
    first = [10, 11] + [IMAGE] * image_tokens + [12] + [VIDEO] * video_tokens + [13, 14, 15]
    second = [20] + [VIDEO] * video_tokens + [21, 22]
    pad = len(first) - len(second)
    input_ids = torch.tensor([first, [0] * pad + second])
    attention_mask = torch.tensor([[1] * len(first), [0] * pad + [1] * len(second)])
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "pixel_values_images": torch.randn(3, 3, crop, crop, generator=generator),
        "pixel_values_videos": torch.randn(2, num_frames, 3, crop, crop, generator=generator),
    }


@pytest.mark.parametrize("preset", ["vjepa2-tiny-qwen2", "vjepa2-tiny-llama"])
def test_forward_loss_and_every_parameter_gets_a_gradient(preset):
    model = tiny_model(preset).train()
    batch = multimodal_batch(model.config)
    labels = batch["input_ids"].clone()
    labels[(labels == IMAGE) | (labels == VIDEO) | (batch["attention_mask"] == 0)] = -100
    out = model(**batch, labels=labels)
    assert out.logits.shape == (*batch["input_ids"].shape, model.config.text_config.vocab_size)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum())]
    assert not missing, f"parameters without gradient: {missing}"


@pytest.mark.parametrize("preset", ["vjepa2-tiny-qwen2", "vjepa2-tiny-llama"])
def test_supervised_logits_only_gives_the_full_paths_loss_and_gradients(preset):
    model = tiny_model(preset).train()
    batch = multimodal_batch(model.config)
    # Few supervised tokens, as in a multiple-choice answer, in both rows; one of them is the row's last token
    # (predicting nothing: the shift must drop it).
    labels = torch.full_like(batch["input_ids"], -100)
    labels[0, -3:] = batch["input_ids"][0, -3:]
    labels[1, -2] = batch["input_ids"][1, -2]

    def loss_and_grads(**kwargs):
        model.zero_grad()
        loss = model(**batch, labels=labels, **kwargs).loss
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    full_loss, full_grads = loss_and_grads()
    loss, grads = loss_and_grads(supervised_logits_only=True)
    assert torch.allclose(loss, full_loss, rtol=1e-6, atol=1e-6)
    assert grads.keys() == full_grads.keys() and len(grads) == sum(p.requires_grad for p in model.parameters())
    for name, grad in grads.items():
        assert torch.allclose(grad, full_grads[name], rtol=1e-4, atol=1e-7), name
    # The shared loss function's token-count normalization (`num_items_in_batch`) goes through as well.
    count = torch.tensor(7)
    assert torch.allclose(model(**batch, labels=labels, supervised_logits_only=True, num_items_in_batch=count).loss,
                          model(**batch, labels=labels, num_items_in_batch=count).loss, rtol=1e-6, atol=1e-6)
    out = model(**batch, labels=labels, supervised_logits_only=True)
    assert out.logits is None
    with pytest.raises(ValueError, match="needs labels"):
        model(**batch, supervised_logits_only=True)


def test_several_encoder_layers_feed_the_projector():
    model = tiny_model("vjepa2-tiny-llama", vision_feature_layer=[1, -1]).train()
    assert model.model.multi_modal_projector.queries.shape[-1] == 2 * model.config.vision_config.hidden_size
    model(**multimodal_batch(model.config)).logits.sum().backward()
    assert all(p.grad is not None for p in model.model.vision_tower.layer[1].parameters())


def test_a_random_vision_tower_starts_as_a_freshly_built_encoder():
    """The "random encoder" baseline must be the pretrained encoder's starting point: same per-tensor init
    (residual output projections of block l at std / sqrt(2 l)), not the LLM's plain init."""
    tower = tiny_model().model.vision_tower.state_dict()
    torch.manual_seed(1)
    encoder = VJEPA2Model(VJEPA2Config.from_preset("vjepa2-tiny")).encoder.state_dict()
    assert tower.keys() == encoder.keys()
    for name, value in tower.items():
        assert value.std().item() == pytest.approx(encoder[name].std().item(), rel=0.1, abs=1e-6), name
    std = VJEPA2Config.from_preset("vjepa2-tiny").initializer_range
    assert tower["layer.3.mlp.fc2.weight"].std().item() == pytest.approx(std / 8**0.5, rel=0.05)


def test_a_few_steps_overfit_one_batch():
    model = tiny_model("vjepa2-tiny-llama").train()
    batch = multimodal_batch(model.config)
    labels = batch["input_ids"].masked_fill((batch["input_ids"] < 10) | (batch["attention_mask"] == 0), -100)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_videos_of_different_lengths_and_bfloat16():
    model = tiny_model().eval().to(torch.bfloat16)
    per_tubelet = model.config.tokens_per_tubelet
    videos = [torch.randn(2, 3, 64, 64), torch.randn(6, 3, 64, 64)]
    input_ids = torch.tensor([[10] + [VIDEO] * (4 * per_tubelet) + [11]])
    with torch.no_grad():
        logits = model(input_ids=input_ids, pixel_values_videos=videos).logits
        generated = model.generate(input_ids=input_ids, pixel_values_videos=videos, max_new_tokens=2, do_sample=False)
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits).all()
    assert generated.shape == (1, input_ids.shape[1] + 2)


def test_mismatched_placeholders_raise_before_scatter():
    model = tiny_model().eval()
    batch = multimodal_batch(model.config)
    batch["pixel_values_images"] = batch["pixel_values_images"][:2]
    with pytest.raises(ValueError, match="Image features and tokens do not match: 32 vs 48"):
        model(**batch)


def test_placeholders_without_pixels_raise():
    model = tiny_model().eval()
    batch = multimodal_batch(model.config)
    del batch["pixel_values_videos"]
    with pytest.raises(ValueError, match="pixel_values_videos is None"):
        model(**batch)


def test_frozen_vision_tower_gets_no_gradient_but_projector_does():
    model = tiny_model(freeze_vision_tower=True).train()
    out = model(**multimodal_batch(model.config))
    out.logits.float().pow(2).mean().backward()
    assert all(p.grad is None for p in model.model.vision_tower.parameters())
    assert all(p.grad is not None for p in model.model.multi_modal_projector.parameters())
    model.model.set_vision_tower_trainable(True)
    assert all(p.requires_grad for p in model.model.vision_tower.parameters())


def test_text_only_training_batch_still_runs_the_vision_tower():
    model = tiny_model("vjepa2-tiny-llama").train()
    input_ids = torch.tensor([[10, 11, 12, 13]])
    out = model(input_ids=input_ids, labels=input_ids)
    out.loss.backward()
    visual = list(model.model.vision_tower.parameters()) + list(model.model.multi_modal_projector.parameters())
    assert all(p.grad is not None and not p.grad.abs().sum() for p in visual)
    reference = tiny_model("vjepa2-tiny-llama").eval()
    assert torch.allclose(reference(input_ids=input_ids).logits, out.logits, atol=1e-6)


@pytest.mark.parametrize("preset", ["vjepa2-tiny-qwen2", "vjepa2-tiny-llama"])
def test_cached_and_uncached_greedy_generation_agree(preset):
    model = tiny_model(preset).eval()
    batch = multimodal_batch(model.config)
    kwargs = dict(max_new_tokens=6, do_sample=False, pad_token_id=0)
    with torch.no_grad():
        cached = model.generate(**batch, use_cache=True, **kwargs)
        uncached = model.generate(**batch, use_cache=False, **kwargs)
    assert cached.shape == (2, batch["input_ids"].shape[1] + 6)
    assert torch.equal(cached, uncached)


def test_generate_encodes_pixels_only_at_the_prefill_step():
    model = tiny_model().eval()
    calls = []
    model.model.vision_tower.register_forward_hook(lambda module, args, output: calls.append(args[0].shape))
    with torch.no_grad():
        model.generate(**multimodal_batch(model.config), max_new_tokens=4, do_sample=False, pad_token_id=0)
    assert len(calls) == 2  # the images' tiles and the videos, once each


@pytest.mark.parametrize("preset, llm_class", [("vjepa2-tiny-qwen2", Qwen2ForCausalLM), ("vjepa2-tiny-llama", LlamaForCausalLM)])
def test_llm_forward_equals_the_plain_llm_fed_the_same_inputs_embeds(preset, llm_class):
    model = tiny_model(preset).eval()
    batch = multimodal_batch(model.config)
    reference = llm_class(model.config.text_config).eval()
    state = {k.replace("model.language_model.", "model."): v for k, v in model.state_dict().items() if "language_model" in k}
    reference.load_state_dict({**state, "lm_head.weight": model.lm_head.weight}, strict=True)
    with torch.no_grad():
        out = model(**batch)
        embeds = model.get_input_embeddings()(batch["input_ids"])
        embeds[batch["input_ids"] == IMAGE] = model.get_image_features(batch["pixel_values_images"])
        embeds[batch["input_ids"] == VIDEO] = model.get_video_features(batch["pixel_values_videos"])
        expected = reference(inputs_embeds=embeds, attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(out.logits, expected, rtol=0, atol=1e-5)


def test_inputs_embeds_path_finds_placeholders_by_embedding():
    model = tiny_model().eval()
    batch = multimodal_batch(model.config)
    with torch.no_grad():
        by_ids = model(**batch).logits
        embeds = model.get_input_embeddings()(batch.pop("input_ids"))
        by_embeds = model(inputs_embeds=embeds, **batch).logits
    torch.testing.assert_close(by_ids, by_embeds)


def test_save_and_load_round_trip_through_auto_classes(tmp_path):
    model = tiny_model("vjepa2-tiny-llama").eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    assert AutoConfig.from_pretrained(tmp_path).model_type == "vjepa2_vlm"
    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path).eval()
    assert type(loaded) is VJEPA2VLMForConditionalGeneration
    batch = multimodal_batch(model.config)
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits, loaded(**batch).logits, rtol=0, atol=0)


def test_assembled_from_a_saved_encoder_and_a_saved_llm(tmp_path):
    reference = VJEPA2VLMConfig.from_preset("vjepa2-tiny-qwen2")
    torch.manual_seed(0)
    VJEPA2Model(VJEPA2Config.from_preset("vjepa2-tiny")).save_pretrained(tmp_path / "encoder")
    Qwen2ForCausalLM(reference.text_config).save_pretrained(tmp_path / "llm")
    model = VJEPA2VLMForConditionalGeneration.from_pretrained_towers(
        tmp_path / "encoder", tmp_path / "llm", image_token_id=IMAGE, video_token_id=VIDEO
    ).eval()
    encoder = VJEPA2Model.from_pretrained(tmp_path / "encoder").encoder.eval()
    llm = Qwen2ForCausalLM.from_pretrained(tmp_path / "llm").eval()
    clip = torch.randn(1, 4, 3, 64, 64)
    ids = torch.tensor([[5, 6, 7]])
    with torch.no_grad():
        torch.testing.assert_close(model.model.vision_tower(clip).last_hidden_state, encoder(clip).last_hidden_state)
        torch.testing.assert_close(model(input_ids=ids).logits, llm(input_ids=ids).logits)
    projector = torch.cat([p.flatten() for p in model.model.multi_modal_projector.parameters()])
    assert torch.isfinite(projector).all() and 0 < projector.std() < 1


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def _vit_params(width, depth, mlp, channels=3, tubelet=2, patch=16) -> int:
    block = 2 * width + (3 * width * width + 3 * width) + (width * width + width) + 2 * width
    block += (width * mlp + mlp) + (mlp * width + width)
    return channels * tubelet * patch * patch * width + width + depth * block + 2 * width


@pytest.mark.parametrize(
    "preset, llm_class, llm_params, projector_params",
    [
        # Qwen2-7B: 7,615,616,512 parameters. Pooler at ViT-g width: 64 queries (256 patches / ratio 4), key norm,
        # 4 attention projections, MLP norm, 1408 -> 6144 -> 1408 MLP, 1408 -> 3584 output map.
        (
            "vjepa2-vitg-qwen2-7b",
            Qwen2ForCausalLM,
            7_615_616_512,
            64 * 1408 + 2 * 1408 + 4 * (1408 * 1408 + 1408) + 2 * 1408 + (1408 * 6144 + 6144) + (6144 * 1408 + 1408)
            + (1408 * 3584 + 3584),
        ),
        # Llama-3.1-8B: 8,030,261,248 parameters; MLP 1408 -> 4096 -> 4096.
        ("vjepa2-vitg384-llama3.1-8b", LlamaForCausalLM, 8_030_261_248, 1408 * 4096 + 4096 + 4096 * 4096 + 4096),
    ],
)
def test_real_size_models_build_on_meta_with_published_parameter_counts(preset, llm_class, llm_params, projector_params):
    config = VJEPA2VLMConfig.from_preset(preset)
    with torch.device("meta"):
        model = VJEPA2VLMForConditionalGeneration(config)
        plain_llm = llm_class(config.text_config)
    assert _count(plain_llm) == llm_params
    assert _count(model.model.language_model) + _count(model.lm_head) == llm_params
    assert _count(model.model.vision_tower) == _vit_params(1408, 40, 6144)  # ViT-g, ~1.01B (Table 12)
    assert _count(model.model.multi_modal_projector) == projector_params
    assert 8.5e9 < _count(model) < 9.2e9


def test_vitg_384_with_mlp_projector_gives_288_tokens_per_frame_on_meta():
    config = VJEPA2VLMConfig.from_preset("vjepa2-vitg384-llama3.1-8b")
    with torch.device("meta"):
        model = VJEPA2VLMForConditionalGeneration(config)
        features = model.get_video_features(torch.empty(1, 16, 3, 384, 384))
    assert features.shape == (16 * 288, 4096)
    assert config.tokens_per_tubelet == 2 * 288
