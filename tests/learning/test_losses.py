"""The three pose regression losses on hand-made cases: values and gradients."""
import math

import numpy as np
import pytest
import torch

from vloc.geometry import Pose, quat_to_rotmat, rotmat_to_quat
from vloc.learning.losses import (LearnedWeighting, hand_tuned_loss, pose_errors, quaternion_distance,
                                  quaternion_to_matrix, relative_poses, reprojection_loss, soft_clamp)
from vloc.learning.networks import PoseRegressor, canonical_quaternion


def test_hand_tuned_value_gradient_and_quaternion_sign():
    out = torch.tensor([[3.0, 4.0, 0.0, 0.8, 0.6, 0.0, 0.0]], requires_grad=True)
    pos_err, rot_err = pose_errors(out, torch.zeros(1, 3), torch.tensor([[1.0, 0, 0, 0]]))
    loss = hand_tuned_loss(pos_err, rot_err, beta=2.0)
    assert loss.item() == pytest.approx(5 + 2 * math.sqrt(0.2 ** 2 + 0.6 ** 2))
    loss.backward()
    assert out.grad[0, :3].tolist() == pytest.approx([0.6, 0.8, 0.0])
    # -q is the same rotation: no error, whichever sign the network outputs
    q = torch.tensor([[0.5, -0.5, 0.5, 0.5]])
    assert quaternion_distance(-q, q).item() == 0 and quaternion_distance(q * 3, q).item() < 1e-7
    assert quaternion_distance(-q * 2, q).item() < 1e-7


def test_learned_weighting_from_the_first_batch():
    """weighting_init = first-batch: s starts at log of the first batch's mean errors
    (its optimum for them), once; a checkpoint keeps that it has started."""
    w = LearnedWeighting(from_first_batch=True)
    loss = w(torch.tensor([2.0, 4.0]), torch.tensor([0.1, 0.3]))
    assert w.s_c.item() == pytest.approx(math.log(3.0)) and w.s_r.item() == pytest.approx(math.log(0.2))
    assert loss.item() == pytest.approx(2 + math.log(3.0) + math.log(0.2), rel=1e-6)
    loss.backward()
    assert abs(w.s_c.grad.item()) < 1e-6 and abs(w.s_r.grad.item()) < 1e-6    # at the optimum
    w(torch.tensor([10.0]), torch.tensor([1.0]))                                 # not set again
    assert w.s_c.item() == pytest.approx(math.log(3.0))
    again = LearnedWeighting(from_first_batch=True)
    again.load_state_dict(w.state_dict())
    again(torch.tensor([10.0]), torch.tensor([1.0]))
    assert again.s_c.item() == pytest.approx(math.log(3.0))


def test_learned_weighting_value_gradient_and_no_collapse():
    w = LearnedWeighting()
    assert (w.s_c.item(), w.s_r.item()) == (0.0, -3.0)
    e_c, e_r = torch.tensor([2.0]), torch.tensor([0.1])
    loss = w(e_c, e_r)
    assert loss.item() == pytest.approx(2 + 0 + 0.1 * math.exp(3) - 3, rel=1e-6)
    loss.backward()
    assert w.s_c.grad.item() == pytest.approx(1 - 2.0)              # d/ds (e exp(-s) + s) = 1 - e exp(-s)
    assert w.s_r.grad.item() == pytest.approx(1 - 0.1 * math.exp(3), rel=1e-6)
    # for fixed errors, the best s is log e and the loss there is 1 + log e per term:
    # s cannot drive it down on its own, only smaller errors can
    for e in (0.05, 0.5, 3.0):
        w = LearnedWeighting(0.0, 0.0)
        opt = torch.optim.Adam(w.parameters(), lr=0.05)
        for _ in range(600):
            opt.zero_grad()
            w(torch.tensor([e]), torch.tensor([e])).backward()
            opt.step()
        assert w.s_c.item() == pytest.approx(math.log(e), abs=0.02)
        assert w(torch.tensor([e]), torch.tensor([e])).item() == pytest.approx(2 * (1 + math.log(e)), abs=1e-3)
        s = torch.linspace(-8, 8, 2001)
        grid = e * torch.exp(-s) + s
        assert grid.min().item() >= 1 + math.log(e) - 1e-6


def _camera_batch(q=(1.0, 0, 0, 0), c=(0.0, 0, 0)):
    return torch.tensor([c]), torch.tensor([q])


def test_reprojection_loss_value_gradient_and_clamp():
    points = torch.tensor([[[0.0, 0, 2], [1.0, -1, 2], [-0.5, 0.5, 4]]])      # in front of the true camera
    intr = torch.tensor([[100.0, 100.0, 64.0, 48.0]])
    c_true, q_true = _camera_batch()
    c = torch.tensor([[0.1, 0.0, 0.0]], requires_grad=True)
    loss = reprojection_loss(c, q_true, c_true, q_true, points, intr, threshold=100)
    # a sideways shift of 0.1 moves a point at depth z by 100 * 0.1 / z pixels
    assert loss.item() == pytest.approx((5 + 5 + 2.5) / 3, rel=1e-5)
    loss.backward()
    # d/dc_x = f / z per point; d/dc_z = f (X - c)_x / z^2 along the error (-x): 2.5 - 22.5 + 3.75
    assert c.grad[0].tolist() == pytest.approx([(50 + 50 + 25) / 3, 0, (2.5 - 22.5 + 3.75) / 3], rel=1e-4)
    # the same rotation given as -q costs nothing more
    same = reprojection_loss(c.detach(), -q_true, c_true, q_true, points, intr, threshold=100)
    assert same.item() == pytest.approx(loss.item(), rel=1e-6)
    # soft clamp: errors above the threshold grow as a square root
    assert soft_clamp(torch.tensor([1.0, 4.0, 9.0]), 4.0).tolist() == pytest.approx([1.0, 4.0, 6.0])
    clamped = reprojection_loss(c.detach(), q_true, c_true, q_true, points, intr, threshold=4)
    assert clamped.item() == pytest.approx((2 * math.sqrt(20) + 2.5) / 3, rel=1e-5)


def test_reprojection_of_a_rotated_pose_matches_numpy():
    rng = np.random.default_rng(0)
    R = Pose.from_qt(rng.normal(size=4), [0, 0, 0]).R
    pose = Pose(R, rng.normal(size=3))
    X = pose.inverse().transform(np.c_[rng.uniform(-1, 1, (5, 2)), rng.uniform(2, 4, 5)])   # in front
    q = torch.tensor(pose.q[None], dtype=torch.float64)
    uv_loss = reprojection_loss(torch.zeros(1, 3, dtype=torch.float64), q, torch.tensor(pose.center[None]), q,
                                torch.tensor(X[None]), torch.tensor([[100.0, 100, 50, 50]], dtype=torch.float64))
    x_cam = pose.transform(X)
    uv_pred = x_cam[:, :2] / x_cam[:, 2:] * 100 + 50
    x_origin = X @ R.T                                   # centre at the origin, same rotation
    err = np.linalg.norm(uv_pred - np.where(x_origin[:, 2:] > 0.1 * x_cam[:, 2:], x_origin[:, :2] / x_origin[:, 2:],
                                            x_origin[:, :2] / (0.1 * x_cam[:, 2:])) * 100 - 50, axis=1)
    assert uv_loss.item() == pytest.approx(np.mean(np.where(err <= 100, err, np.sqrt(100 * err))), rel=1e-6)
    assert np.allclose(quaternion_to_matrix(q)[0].numpy(), R)


def test_relative_poses_and_canonical_quaternions():
    a, b = Pose.from_qt([0.9, 0.1, -0.3, 0.2], [1, 2, 3]), Pose.from_qt([0.7, -0.2, 0.1, 0.6], [0, -1, 2])
    c = torch.tensor(np.stack([a.center, b.center]))
    q = torch.tensor(np.stack([a.q, -b.q]))               # either sign
    dc, dq = relative_poses(c, q, torch.tensor([0]), torch.tensor([1]))
    assert np.allclose(dc[0].numpy(), b.center - a.center)
    assert np.allclose(quat_to_rotmat(dq[0].numpy()), b.R @ a.R.T)          # cam_b from cam_a
    qc = canonical_quaternion(torch.tensor([[-2.0, 0, 0, 0], [0.0, 0, 0, 3]]))
    assert qc.tolist() == [[1.0, 0, 0, 0], [0.0, 0, 0, 1]]
    # the network's buffers map the head output to world positions
    net = PoseRegressor(feature_dim=8, width=4)
    net.set_position_normalisation(torch.tensor([[0.0, 0, 0], [2.0, 0, 0]]))
    assert net.position_mean.tolist() == [1, 0, 0] and net.position_scale.item() == 1
    centres, quats = net(torch.rand(2, 3, 32, 48))
    assert centres.shape == (2, 3) and quats.shape == (2, 4) and (quats[:, 0] >= 0).all()
    assert net.features(torch.rand(1, 3, 32, 48)).shape == (1, 8) and net.head.in_features == 8
    assert np.allclose(rotmat_to_quat(np.eye(3)), [1, 0, 0, 0])
