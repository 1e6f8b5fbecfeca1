import json
import statistics

import pytest
import torch
import transformers
from transformers import AutoModelForVideoClassification

from vjepa_vlm import VJEPA2Config, VJEPA2Model
from vjepa_vlm.eval.probe import (
    MultiHeadProbe,
    ProbeArgs,
    average_logits,
    load_clips,
    segment_starts,
    spatial_views,
    stratified_split,
    train_probe_sweep,
)
from vjepa_vlm.modeling_vjepa2_probe import VJEPA2ForVideoClassification, probe_tokens

torch.set_num_threads(1)

TINY = dict(
    hidden_size=64, num_hidden_layers=2, num_attention_heads=4, crop_size=32, frames_per_clip=4, patch_size=16,
    pred_hidden_size=32, pred_num_attention_heads=4, pred_num_hidden_layers=1,
)


def test_transformers_checkpoints_load_both_ways_with_identical_logits(tmp_path):
    torch.manual_seed(0)
    theirs = transformers.VJEPA2ForVideoClassification(transformers.VJEPA2Config(**TINY, num_labels=5)).eval()
    for param in theirs.pooler.parameters():
        torch.nn.init.normal_(param, std=0.1)
    theirs.save_pretrained(tmp_path / "theirs")
    ours = AutoModelForVideoClassification.from_pretrained(tmp_path / "theirs").eval()
    assert isinstance(ours, VJEPA2ForVideoClassification)
    clips = torch.randn(2, 4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(clips).logits, theirs(clips).logits)
    ours.save_pretrained(tmp_path / "ours")
    back = transformers.VJEPA2ForVideoClassification.from_pretrained(tmp_path / "ours").eval()
    with torch.no_grad():
        torch.testing.assert_close(back(clips).logits, ours(clips).logits)


def test_probe_is_four_blocks_with_a_final_cross_attention_and_trains_every_parameter():
    config = VJEPA2Config(**TINY, num_labels=3, pooler_num_attention_heads=16)
    model = VJEPA2ForVideoClassification(config)
    assert len(model.pooler.self_attention_layers) == 3 and model.pooler.query_tokens.shape == (1, 1, 64)
    assert model.pooler.cross_attention_layer.cross_attn.num_heads == 16
    assert not hasattr(model.pooler.cross_attention_layer.cross_attn, "out_proj")
    model.vjepa2.requires_grad_(False)
    output = model(torch.randn(2, 4, 3, 32, 32), labels=torch.tensor([0, 2]))
    output.loss.backward()
    assert output.logits.shape == (2, 3) and torch.isfinite(output.loss)
    # The cross-attention key bias shifts all scores of the one query equally: its gradient is exactly 0.
    shift_invariant = "pooler.cross_attention_layer.cross_attn.k_proj.bias"
    trained = [n for n, p in model.named_parameters() if not n.startswith("vjepa2.") and n != shift_invariant]
    assert all(model.get_parameter(n).grad is not None for n in trained)
    with pytest.raises(ValueError, match="labels must have shape"):
        model(torch.randn(2, 4, 3, 32, 32), labels=torch.tensor([0]))


def test_multi_layer_input_attends_to_tokens_of_every_listed_layer():
    config = VJEPA2Config(**TINY, num_labels=3, probe_output_layers=[0, 1])
    model = VJEPA2ForVideoClassification(config).eval()
    seen = {}
    model.pooler.self_attention_layers[0].register_forward_hook(lambda m, i, o: seen.update(tokens=i[0].shape))
    model(torch.randn(1, 4, 3, 32, 32))
    assert seen["tokens"] == (1, 2 * 2 * 2 * 2, 64)  # two layers of a 2x2x2 grid


def test_sweep_has_one_head_per_lr_wd_pair_with_its_own_optimizer_settings():
    config = VJEPA2Config(**TINY)
    args = ProbeArgs(num_heads=4)
    probe = MultiHeadProbe(config, 5, args)
    assert len(probe.heads) == 20
    groups = probe.param_groups()
    assert {(g["lr_scale"], g["weight_decay_scale"]) for g in groups} == set(args.grid)
    assert probe(torch.randn(3, 7, 64)).shape == (20, 3, 5)


def separable_features(centers: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 2 clips, 5 tokens, D) tokens scattered around their class center, classes in turn."""
    labels = torch.arange(n) % len(centers)
    return centers[labels][:, None, None, :] + torch.randn(n, 2, 5, centers.shape[1]), labels


def test_sweep_chooses_the_head_on_the_selection_split_and_reports_its_other_accuracies():
    torch.manual_seed(0)
    config = VJEPA2Config(**TINY)
    centers = torch.randn(3, 64) * 3
    train_x, train_y = separable_features(centers, 60)
    val_x, val_y = separable_features(centers, 30)
    test_x, _ = separable_features(centers, 30)
    # lr 1e-3 learns the task; lr 1e-7 leaves its head near initialization. Training is seeded, so a first sweep
    # tells what the second head will predict on the test clips; labelled with those predictions, the test split
    # ranks the heads the other way round from the validation split.
    args = ProbeArgs(learning_rates=(1e-3, 1e-7), weight_decays=(0.01,), epochs=5, batch_size=16, num_heads=4)
    probe = train_probe_sweep(config, train_x, train_y, {"val": (val_x, val_y)}, 3, args, select_on="val")["probe"]
    with torch.no_grad():
        test_y = average_logits(probe.eval()(test_x.flatten(0, 1)).unflatten(1, (30, 2)))[1].argmax(-1)
    splits = {"val": (val_x, val_y), "test": (test_x, test_y)}
    on_val = train_probe_sweep(config, train_x, train_y, splits, 3, args, select_on="val")
    learned, untrained = on_val["heads"]
    assert learned["val_accuracy"] == 1.0 > untrained["val_accuracy"]
    assert untrained["test_accuracy"] == 1.0 > learned["test_accuracy"]
    assert on_val["best"] == {**learned, "index": 0, "selected_on": "val"}
    on_test = train_probe_sweep(config, train_x, train_y, splits, 3, args, select_on="test")
    assert on_test["heads"] == on_val["heads"] and on_test["best"] == {**untrained, "index": 1, "selected_on": "test"}
    with pytest.raises(ValueError, match=r"train labels must lie in \[0, 2\)"):
        train_probe_sweep(config, train_x, train_y, splits, 2, args, select_on="val")
    with pytest.raises(ValueError, match="select_on='val' is not one of the evaluated splits"):
        train_probe_sweep(config, train_x, train_y, {"test": (test_x, test_y)}, 3, args, select_on="val")
    with pytest.raises(ValueError, match="the val split is empty"):
        train_probe_sweep(config, train_x, train_y, {"val": (val_x[:0], val_y[:0])}, 3, args, select_on="val")


def test_stratified_split_holds_out_a_share_of_every_class_disjoint_and_reproducibly():
    labels = torch.tensor([0] * 20 + [1] * 10 + [2] * 3 + [3])
    kept, held = stratified_split(labels, 0.1, seed=0)
    assert set(kept.tolist()).isdisjoint(held.tolist()) and sorted(kept.tolist() + held.tolist()) == list(range(34))
    # 10% of 20 and of 10; a class of 3 still gives one; a class of one stays in train.
    assert torch.bincount(labels[held], minlength=4).tolist() == [2, 1, 1, 0]
    assert all(torch.equal(a, b) for a, b in zip(stratified_split(labels, 0.1, seed=0), (kept, held)))
    assert not torch.equal(stratified_split(labels, 0.1, seed=1)[1], held)
    assert stratified_split(labels, 0.0, seed=0)[1].numel() == 0
    with pytest.raises(ValueError, match=r"validation fraction must lie in \[0, 1\), got 1.0"):
        stratified_split(labels, 1.0, seed=0)


def test_multi_clip_multi_view_helpers():
    assert segment_starts(40, 16, 2) == [0, 24] and segment_starts(10, 16, 3) == [0, 0, 0]
    views = spatial_views(torch.rand(4, 3, 32, 48), 32, 3)
    assert [v.shape for v in views] == [(4, 3, 32, 32)] * 3
    assert not torch.equal(views[0], views[2])
    logits = torch.tensor([[[1.0, 0.0], [0.0, 3.0]]])
    torch.testing.assert_close(average_logits(logits), torch.tensor([[0.5, 1.5]]))


def test_run_probe_script_end_to_end_on_a_tiny_world(tmp_path):
    from vjepa_vlm.data.synthetic_world import generate_world
    from vjepa_vlm.scripts import run_probe

    world = tmp_path / "world"
    generate_world(world, n_train=16, n_test=8, seed=0, motions=("move_left", "move_right"))
    torch.manual_seed(0)
    VJEPA2Model(VJEPA2Config(**TINY)).save_pretrained(tmp_path / "encoder")
    common = ["--world", str(world), "--frames", "4", "--frame-step", "2", "--resolution", "32", "--epochs", "2",
              "--batch-size", "8", "--learning-rates", "1e-3", "1e-4", "--weight-decays", "0.01", "--num-heads", "4"]
    summary = run_probe.main(
        ["--encoder", str(tmp_path / "encoder"), "--tasks", "motion", "appearance", "--seeds", "0", "1",
         "--val-fraction", "0.25", "--output", str(tmp_path / "probe.json"),
         "--save-model", str(tmp_path / "classifier")] + common
    )
    assert json.loads((tmp_path / "probe.json").read_text()) == json.loads(json.dumps(summary))
    assert set(summary["tasks"]) == {"motion", "appearance"} and summary["selected_on"] == "val"
    motion = summary["tasks"]["motion"]
    # The validation videos come out of the training manifest (a quarter of each of the two motions) and the
    # probe never trains on them.
    items, labels = run_probe.labelled_items(world / "train" / "motion_classification.jsonl", world)
    parts = run_probe.split_items(items, labels, 0.25, seed=0)
    train_paths, val_paths = ({str(path) for _, path in parts[name][0]} for name in ("train", "val"))
    assert sorted(val_paths) == sorted(motion["val_items"]) and val_paths.isdisjoint(train_paths)
    assert motion["num_items"] == {"train": 12, "val": 4, "test": 8} and len(train_paths | val_paths) == 16
    for run in motion["seeds"]:
        val_best = max(range(len(run["heads"])), key=lambda i: run["heads"][i]["val_accuracy"])
        assert run["best"] == {**run["heads"][val_best], "index": val_best, "selected_on": "val"}
    tests = [run["best"]["test_accuracy"] for run in motion["seeds"]]
    assert motion["accuracy"]["test"] == {"mean": statistics.mean(tests), "std": statistics.stdev(tests)}
    # The saved classifier is the first seed's chosen head: classifying the test videos with it, logits averaged
    # over the 2 segments x 3 views as the probe does, gives the reported test accuracy exactly.
    classifier = AutoModelForVideoClassification.from_pretrained(tmp_path / "classifier").eval()
    assert classifier.config.num_labels == motion["num_labels"]
    test_items, test_labels = run_probe.labelled_items(world / "test" / "motion_classification.jsonl", world)
    clip_args = ProbeArgs(num_frames=4, frame_step=2, resolution=32)
    with torch.no_grad():
        predictions = torch.stack(
            [classifier(load_clips(kind, path, clip_args, 2, 3)).logits.mean(0).argmax() for kind, path in test_items]
        )
    assert (predictions == test_labels).float().mean().item() == motion["seeds"][0]["best"]["test_accuracy"]

    image = run_probe.main(["--encoder", str(tmp_path / "encoder"), "--tasks", "image", "--random-init",
                            "--single-frame", "--num-blocks", "1", "--select-on", "test", "--val-fraction", "0",
                            "--output", str(tmp_path / "image.json")] + common)
    task = image["tasks"]["image"]
    assert image["random_init"] and image["selected_on"] == task["selected_on"] == "test"
    assert task["val_items"] == [] and set(task["accuracy"]) == {"test"} and task["accuracy"]["test"]["std"] is None
    run = task["seeds"][0]
    assert run["best"]["test_accuracy"] == max(head["test_accuracy"] for head in run["heads"])
    with pytest.raises(SystemExit):
        run_probe.main(["--encoder", str(tmp_path / "encoder"), "--val-fraction", "0",
                        "--output", str(tmp_path / "x.json")] + common)
    with pytest.raises(FileNotFoundError, match="not a VJEPA2Model directory"):
        run_probe.main(["--encoder", str(tmp_path), "--output", str(tmp_path / "x.json")] + common)


def test_few_query_attention_path_equals_projecting_every_token():
    from vjepa_vlm.vision.attentive_pooler import PoolerAttention

    torch.manual_seed(0)
    attention = PoolerAttention(VJEPA2Config(), 96, 16, output_projection=False)
    for param in attention.parameters():
        torch.nn.init.normal_(param, std=0.2)
    queries, tokens = torch.randn(3, 1, 96), torch.randn(3, 50, 96)
    reference = torch.nn.functional.scaled_dot_product_attention(
        attention._split(attention.q_proj(queries)),
        attention._split(attention.k_proj(tokens)),
        attention._split(attention.v_proj(tokens)),
    ).transpose(1, 2).flatten(2)
    torch.testing.assert_close(attention(queries, tokens), reference, atol=1e-5, rtol=1e-4)


def test_sincos_positions_make_the_pooler_order_aware_and_keep_the_transformers_layout(tmp_path):
    torch.manual_seed(0)
    blind = VJEPA2ForVideoClassification(VJEPA2Config(**TINY, num_labels=3)).eval()
    aware = VJEPA2ForVideoClassification(VJEPA2Config(**TINY, num_labels=3, probe_position_embedding="sincos")).eval()
    aware.load_state_dict(blind.state_dict())  # no new parameters: the same state dict fits both
    tokens, grid = torch.randn(2, 8, 64), (2, 2, 2)
    order = torch.randperm(8)
    with torch.no_grad():
        # Without positions the pooler is a function of the token set; with them, shuffling the grid changes it.
        torch.testing.assert_close(blind.pooler(tokens[:, order]), blind.pooler(tokens), atol=1e-5, rtol=1e-4)
        assert not torch.allclose(aware.pooler(tokens[:, order], grid), aware.pooler(tokens, grid), atol=1e-3)
    with pytest.raises(ValueError, match="needs the tokens' grid_size"):
        aware.pooler(tokens)
    aware.save_pretrained(tmp_path / "aware")
    reloaded = AutoModelForVideoClassification.from_pretrained(tmp_path / "aware").eval()
    assert reloaded.config.probe_position_embedding == "sincos"
    clips = torch.randn(1, 4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(clips).logits, aware(clips).logits)
    theirs = transformers.VJEPA2ForVideoClassification.from_pretrained(tmp_path / "aware", output_loading_info=True)
    assert all(not keys for keys in theirs[1].values() if isinstance(keys, (list, set)))


def test_sincos_embedding_gives_every_grid_token_its_own_code_and_repeats_per_layer():
    from vjepa_vlm.vision.attentive_pooler import sincos_position_embedding

    embedding = sincos_position_embedding((4, 8, 8), 96)
    assert embedding.shape == (256, 96) and embedding.abs().max() <= 1
    assert torch.cdist(embedding, embedding).add(torch.eye(256)).min() > 0.1  # all rows distinct
    # t is the outermost axis: tokens 64 apart differ only in their time features.
    torch.testing.assert_close(embedding[64, 32:], embedding[0, 32:])
    assert sincos_position_embedding((1, 2, 2), 64)[:, 60:].abs().max() == 0  # 64 = 3 * 20 + 4 unused features
    config = VJEPA2Config(**TINY, num_labels=3, probe_output_layers=[0, 1], probe_position_embedding="sincos")
    model = VJEPA2ForVideoClassification(config).eval()
    seen = {}
    model.pooler.self_attention_layers[0].register_forward_hook(lambda m, i, o: seen.update(tokens=i[0]))
    with torch.no_grad():
        tokens = probe_tokens(model.vjepa2.encoder, torch.randn(1, 4, 3, 32, 32), [0, 1])
        model.pooler(tokens, (2, 2, 2))
    added = seen["tokens"] - tokens
    torch.testing.assert_close(added[0, :8], added[0, 8:])
    torch.testing.assert_close(added[0, :8], sincos_position_embedding((2, 2, 2), 64))
