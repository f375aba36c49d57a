"""Training on a tiny synthetic room at very low resolution: the loss drops, held-out
and query predictions beat the mean training pose, checkpoints resume exactly."""
import numpy as np
import pytest
import torch

from vloc.errors import VlocError
from vloc.geometry import average_rotations, rotation_error_deg
from vloc.learning.config import PoseRegressionConfig
from vloc.learning.data import input_size, load_pose_data
from vloc.learning.train import Trainer, build_model, epochs_that_fit, holdout_split, train_pose_regressor

TINY = dict(image_size=64, batch_size=8, width=8, feature_dim=64)


@pytest.fixture(scope="module")
def trained(tiny_room):
    """PoseNet, hand-tuned loss, 30 epochs of 5 steps (cosine schedule; early stopping, patience 40)."""
    fold = tiny_room.split("official")[0]
    return fold, train_pose_regressor(list(fold.mapping), PoseRegressionConfig(epochs=30, **TINY), progress=False)


def test_training_loss_drops_and_beats_the_mean_pose(trained):
    fold, tr = trained
    losses = [h["loss"] for h in tr.history]
    assert tr.steps == 5 * tr.epoch and tr.epoch >= 15 and len(tr.val_idx) == 4 and len(tr.train_idx) == 36
    assert np.mean(losses[-5:]) < 0.5 * losses[0]
    frames = list(fold.mapping)
    train_frames = [frames[i] for i in tr.train_idx.tolist()]
    mean_centre = np.mean([f.cam_from_world.center for f in train_frames], axis=0)
    mean_R = average_rotations([f.cam_from_world.R for f in train_frames])
    held_out = [frames[i] for i in tr.val_idx.tolist()] + list(fold.query)
    x = torch.cat([load_pose_data([f], input_size(f.camera, 64), 64, progress=False).images for f in held_out])
    with torch.no_grad():
        centres, quats = tr.model.eval()(x.float() / 255)
    ours = np.linalg.norm(centres.numpy() - [f.cam_from_world.center for f in held_out], axis=1)
    base = np.linalg.norm(mean_centre - np.array([f.cam_from_world.center for f in held_out]), axis=1)
    from vloc.geometry import quat_to_rotmat
    rot = [rotation_error_deg(quat_to_rotmat(q), f.cam_from_world.R) for q, f in zip(quats.numpy(), held_out)]
    rot_base = [rotation_error_deg(mean_R, f.cam_from_world.R) for f in held_out]
    assert np.median(ours) < 0.8 * np.median(base), (ours, base)
    assert np.median(rot) < 0.8 * np.median(rot_base), (rot, rot_base)


def _trainer(fold, config, variant):
    frames = list(fold.mapping)
    points = config.points_per_frame if config.loss == "reprojection" else 0
    data = load_pose_data(frames, input_size(frames[0].camera, 64), 64, points, virtual_depth=2.0, progress=False)
    train_idx, val_idx = holdout_split(len(frames), config.holdout_every)
    return Trainer(build_model(config, data.centres[train_idx]), data, config, variant, train_idx, val_idx)


@pytest.mark.parametrize("variant,loss", [("mapnet", "learned"), ("posenet", "reprojection")])
def test_checkpoint_resume_gives_identical_results(tiny_room, tmp_path, variant, loss):
    fold = tiny_room.split("official")[0]
    config = PoseRegressionConfig(loss=loss, epochs=2, pretrain_fraction=0.5, points_per_frame=16, **TINY)
    straight = _trainer(fold, config, variant)
    assert straight.steps_per_epoch == (9 if variant == "mapnet" else 5)
    n = straight.steps_per_epoch + 3                 # crosses an epoch; stops mid-epoch
    for k in range(2 * n):
        if k == straight.steps_per_epoch:
            straight.end_epoch(0.0)               # reprojection starts in the second epoch
        straight.step()
    first = _trainer(fold, config, variant)
    for k in range(n):
        if k == first.steps_per_epoch:
            first.end_epoch(0.0)
        first.step()
    first.save(tmp_path / "ckpt.pt")
    resumed = _trainer(fold, config, variant)
    assert resumed.load(tmp_path / "ckpt.pt") and resumed.steps == n and resumed.phase_loss == loss
    for _ in range(n):
        resumed.step()
    a, b = straight.state_dict(), resumed.state_dict()
    assert a["steps"] == b["steps"] == 2 * n
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    if loss == "learned":
        assert torch.equal(straight.weighting.s_r, resumed.weighting.s_r) and straight.weighting.s_r.item() != -3
    assert torch.equal(straight.generator.get_state(), resumed.generator.get_state())
    # a checkpoint of another training is ignored; a corrupt one is a clear error
    other = _trainer(fold, PoseRegressionConfig(loss=loss, epochs=3, points_per_frame=16, **TINY), variant)
    assert not other.load(tmp_path / "ckpt.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(VlocError, match="cannot read training checkpoint"):
        other.load(tmp_path / "bad.pt")


def test_the_reprojection_loss_starts_with_fresh_adam_moments(tiny_room):
    """At the switch from the hand-tuned pretraining the optimizer's moments restart:
    after one reprojection step every network parameter's Adam step count is 1."""
    fold = tiny_room.split("official")[0]
    config = PoseRegressionConfig(loss="reprojection", epochs=2, pretrain_fraction=0.5, points_per_frame=16, **TINY)
    tr = _trainer(fold, config, "posenet")
    for _ in range(tr.steps_per_epoch):
        tr.step()
    tr.end_epoch(0.0)
    params = [p for p in tr.model.parameters() if p.requires_grad]
    assert float(tr.optimizer.state[params[0]]["step"]) == tr.steps_per_epoch
    tr.step()
    assert tr.phase_loss == "reprojection"
    assert all(float(tr.optimizer.state[p]["step"]) == 1 for p in params)
    tr.step()
    assert float(tr.optimizer.state[params[0]]["step"]) == 2


def test_early_stopping_and_holdout(tiny_room):
    train, held = holdout_split(40, 10)
    assert held.tolist() == [9, 19, 29, 39] and len(train) == 36
    assert holdout_split(5, 10)[1].size == 0 and holdout_split(40, 0)[1].size == 0
    fold = tiny_room.split("official")[0]
    config = PoseRegressionConfig(epochs=50, patience=1, lr=0.5, augment=False, **TINY)   # diverges: stops soon
    tr = _trainer(fold, config, "posenet")
    tr.fit(progress=False)
    assert tr.stopped and tr.epoch < 50 and tr.best_epoch >= 0
    assert tr.evaluate(tr.val_idx)["score"] == pytest.approx(tr.best, rel=1e-5)    # best weights kept


def test_config_errors():
    with pytest.raises(VlocError, match="loss must be one of"):
        PoseRegressionConfig(loss="l2")
    with pytest.raises(VlocError, match="unknown pose regression map option"):
        PoseRegressionConfig.from_dict({"los": "learned"})
    for bad, match in (({"optimizer": "sgd"}, "optimizer must be one of"),
                       ({"lr_schedule": "step"}, "lr_schedule must be one of"),
                       ({"weight_decay": -1e-4}, "weight_decay must be >= 0")):
        with pytest.raises(VlocError, match=match):
            PoseRegressionConfig(**bad)
    cfg = PoseRegressionConfig.from_dict({"loss": "reprojection", "epochs": 10})
    assert cfg.pretrain_epochs == 5 and PoseRegressionConfig.from_dict(cfg.to_dict()) == cfg


def test_aliked_trunk_is_frozen_and_outside_the_state_dict(tiny_room):
    from vloc.learning.networks import PoseRegressor
    net = PoseRegressor("aliked", feature_dim=16)
    assert set(net.state_dict()) == {"position_mean", "position_scale", "fc.weight", "fc.bias",
                                     "head.weight", "head.bias"}
    fold = tiny_room.split("official")[0]
    config = PoseRegressionConfig(trunk="aliked", epochs=1, image_size=48, batch_size=8, feature_dim=16)
    tr = _trainer(fold, config, "posenet")
    frozen = {k: v.clone() for k, v in tr.model.trunk._net[0].state_dict().items()}
    before = tr.model.head.weight.clone()
    tr.step()
    tr.step()
    assert not torch.equal(before, tr.model.head.weight)
    assert all(torch.equal(v, tr.model.trunk._net[0].state_dict()[k]) for k, v in frozen.items())
    assert tr.model.features(torch.rand(1, 3, 36, 48)).shape == (1, 16)


def test_time_budget_stops_before_an_epoch_that_would_exceed_it(tiny_room, tmp_path):
    fold = tiny_room.split("official")[0]
    config = PoseRegressionConfig(epochs=50, max_minutes=1e-6, **TINY)         # 60 us: one epoch, no more
    tr = _trainer(fold, config, "posenet")
    tr.fit(tmp_path / "ck.pt", progress=False)
    assert tr.epoch == 1 and tr.out_of_time and not tr.stopped
    assert tr.seconds == pytest.approx(tr.history[0]["seconds"]) and tr.seconds > 0
    again = _trainer(fold, config, "posenet")
    assert again.load(tmp_path / "ck.pt") and again.seconds == tr.seconds       # the budget spans resumes
    with pytest.raises(VlocError, match="max_minutes"):
        PoseRegressionConfig(max_minutes=-1)


def test_reprojection_points_without_depth_are_triangulated_on_the_surfaces(tiny_room):
    from dataclasses import replace
    from vloc.learning.data import triangulated_points
    from vloc.maps.depth import read_depth
    fold = tiny_room.split("official")[0]
    frames = [replace(f, depth_path=None) for f in fold.mapping]
    seen = triangulated_points(frames, progress=False)
    assert sum(len(p) >= 14 for p in seen.values()) >= 20      # 128 x 96: some views see too little
    f = max(fold.mapping, key=lambda g: len(seen[g.name]))   # its own depth says where the surfaces are
    pc = f.cam_from_world.transform(seen[f.name])
    uv = f.camera.project(pc).astype(int)
    depth = read_depth(f)
    assert np.median(np.abs(depth[uv[:, 1], uv[:, 0]] - pc[:, 2])) < 0.02
    some = sorted(frames, key=lambda g: len(seen[g.name]))[-3:]
    data = load_pose_data(some, input_size(f.camera, 64), 64, 16, progress=False, scene_points=seen)
    assert data.points.shape == (3, 16, 3)
    assert all(np.isin(data.points[i, :, 0].numpy(), seen[g.name][:, 0].astype(np.float32)).all()
               for i, g in enumerate(some))


def test_learned_weights_have_their_own_step(tiny_room):
    """s_c, s_r move ~weighting_lr per Adam step (at the network's 1e-3 they would need
    thousands of steps to leave their start on a small scene)."""
    fold = tiny_room.split("official")[0]
    tr = _trainer(fold, PoseRegressionConfig(loss="learned", epochs=3, **TINY), "posenet")
    groups = tr.optimizer.param_groups
    assert len(groups) == 2 and groups[1]["lr"] == 1e-2 and groups[1]["weight_decay"] == 0.0
    for _ in range(15):
        tr.step()
    assert tr.weighting.s_r.item() > -3 + 0.1                # rotation errors >> exp(-3): s_r rises
    w = tr.learned_weights()                                  # what the map's stats report
    assert w["s_r"] == tr.weighting.s_r.item() and w["effective_beta"] == pytest.approx(
        np.exp(tr.weighting.s_c.item() - tr.weighting.s_r.item()))
    assert w["effective_beta"] < np.exp(3) - 1              # moved from Kendall's start (e^3 = 20.1)


def test_cosine_schedule_decays_the_network_step_only(tiny_room):
    """The network's lr follows 0.5 lr (1 + cos(pi step / (epochs x steps per epoch)));
    the learned weights keep their own step; adamw is torch's AdamW."""
    fold = tiny_room.split("official")[0]
    config = PoseRegressionConfig(loss="learned", epochs=2, lr_schedule="cosine", optimizer="adamw", **TINY)
    tr = _trainer(fold, config, "posenet")
    assert isinstance(tr.optimizer, torch.optim.AdamW)
    total = 2 * tr.steps_per_epoch
    used = []
    for _ in range(total):
        tr.step()
        used.append([g["lr"] for g in tr.optimizer.param_groups])
    expected = [0.5 * 1e-3 * (1 + np.cos(np.pi * k / total)) for k in range(total)]
    assert np.allclose([u[0] for u in used], expected) and used[0][0] == 1e-3 and used[-1][0] < 0.03 * 1e-3
    assert all(u[1] == 1e-2 for u in used)
    constant = _trainer(fold, PoseRegressionConfig(loss="learned", epochs=2, lr_schedule="constant", **TINY),
                        "posenet")
    constant.step()
    assert constant.optimizer.param_groups[0]["lr"] == 1e-3 and type(constant.optimizer) is torch.optim.Adam


def test_a_time_budget_ends_the_cosine_schedule_with_the_last_epoch_that_fits():
    assert epochs_that_fit(epoch=2, epochs=200, seconds=20.0, longest=10.0, budget=100.0) == 10
    assert epochs_that_fit(epoch=2, epochs=5, seconds=20.0, longest=10.0, budget=100.0) == 5
    assert epochs_that_fit(epoch=9, epochs=200, seconds=95.0, longest=10.0, budget=100.0) == 10
