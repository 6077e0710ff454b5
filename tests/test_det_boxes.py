"""Detection building blocks: anchors, box coding, IoU, target assignment (hand-computed cases)."""
import numpy as np
import paddle
import pytest

from paddle_dcn.models.detection import anchors as A
from paddle_dcn.models.detection import boxes as B
from paddle_dcn.models.detection import targets as T


def test_cell_anchors_by_hand():
    cell = A.cell_anchors([32], [0.5, 1.0, 2.0])
    # r = h/w: w = 32/sqrt(r), h = 32*sqrt(r)
    w, h = 32 / np.sqrt(0.5), 32 * np.sqrt(0.5)
    np.testing.assert_allclose(cell[0], [-w / 2, -h / 2, w / 2, h / 2], rtol=1e-6)
    np.testing.assert_allclose(cell[1], [-16, -16, 16, 16])
    np.testing.assert_allclose(B.box_area_np(cell), [32 * 32] * 3, rtol=1e-5)


def test_grid_anchors_layout_and_shifts():
    gen = A.AnchorGenerator([[8], [16]], aspect_ratios=[1.0], strides=[4, 8])
    a4, a8 = gen([(2, 3), (1, 2)])
    assert a4.shape == (2, 3, 1, 4) and a8.shape == (1, 2, 1, 4)
    np.testing.assert_allclose(a4[0, 0, 0], [-4, -4, 4, 4])
    np.testing.assert_allclose(a4[1, 2, 0], [8 - 4, 4 - 4, 8 + 4, 4 + 4])  # x shift 2*4, y shift 1*4
    np.testing.assert_allclose(a8[0, 1, 0], [8 - 8, -8, 8 + 8, 8])
    half = A.AnchorGenerator([[8]], [1.0], [4], offset=0.5)([(1, 1)])[0]
    np.testing.assert_allclose(half[0, 0, 0], [-2, -2, 6, 6])


def test_anchor_generator_errors():
    with pytest.raises(ValueError, match="strides"):
        A.AnchorGenerator([[8], [16]], [1.0], [4])
    with pytest.raises(ValueError, match="feature levels"):
        A.AnchorGenerator([[8]], [1.0], [4])([(2, 2), (1, 1)])


def test_iou_by_hand():
    a = np.array([[0, 0, 10, 10], [0, 0, 0, 5]], np.float32)
    b = np.array([[5, 5, 15, 15], [0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
    iou = B.box_iou_np(a, b)
    np.testing.assert_allclose(iou[0], [25 / 175, 1.0, 0.0])
    np.testing.assert_allclose(iou[1], [0, 0, 0])  # empty box


def test_encode_decode_round_trip_and_box_coder_reference():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 100, (50, 2))
    refs = np.concatenate([xy, xy + rng.uniform(2, 60, (50, 2))], 1).astype(np.float32)
    xy = rng.uniform(0, 100, (50, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(2, 60, (50, 2))], 1).astype(np.float32)
    for weights in [(1, 1, 1, 1), (10, 10, 5, 5)]:
        deltas = B.encode_np(boxes, refs, weights)
        back = B.decode(paddle.to_tensor(deltas), paddle.to_tensor(refs), weights).numpy()
        np.testing.assert_allclose(back, boxes, rtol=1e-4, atol=1e-3)
        # independent reference: Paddle's box_coder with variances 1/weights, no +1 convention
        var = [1.0 / w for w in weights]
        ref_enc = paddle.vision.ops.box_coder(paddle.to_tensor(refs), var, paddle.to_tensor(boxes),
                                              "encode_center_size", box_normalized=True).numpy()
        # encode gives [N_target, M_prior, 4]; the diagonal pairs box i with ref i
        np.testing.assert_allclose(ref_enc[np.arange(50), np.arange(50)], deltas, rtol=1e-4, atol=1e-4)
        ref_dec = paddle.vision.ops.box_coder(paddle.to_tensor(refs), var, paddle.to_tensor(deltas[:, None, :]),
                                              "decode_center_size", box_normalized=True, axis=1).numpy()
        np.testing.assert_allclose(ref_dec[:, 0], back, rtol=1e-4, atol=1e-3)


def test_decode_clamps_huge_deltas():
    refs = paddle.to_tensor([[0.0, 0.0, 10.0, 10.0]])
    out = B.decode(paddle.to_tensor([[0.0, 0.0, 1e4, 1e4]]), refs).numpy()
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out[0, 2] - out[0, 0], 10 * 1000 / 16, rtol=1e-4)


def test_encode_refuses_empty_boxes():
    with pytest.raises(ValueError, match="positive width"):
        B.encode_np(np.array([[0, 0, 0, 5.0]]), np.array([[0, 0, 4, 4.0]]))


def test_clip_boxes():
    out = B.clip_boxes(paddle.to_tensor([[-5.0, 2.0, 50.0, 70.0]]), paddle.to_tensor(60.0),
                       paddle.to_tensor(40.0)).numpy()
    np.testing.assert_allclose(out, [[0, 2, 40, 60]])


def test_match_thresholds_and_low_quality():
    # 2 gts x 4 candidates
    iou = np.array([[0.8, 0.5, 0.1, 0.0],
                    [0.2, 0.6, 0.25, 0.0]])
    labels, matched = T.match(iou, pos_thr=0.7, neg_thr=0.3)
    np.testing.assert_array_equal(labels, [1, -1, 0, 0])
    np.testing.assert_array_equal(matched[:3], [0, 1, 1])
    labels, matched = T.match(iou, 0.7, 0.3, allow_low_quality=True)
    # gt 1's best candidate (col 1, IoU 0.6) becomes positive, matched to gt 1
    np.testing.assert_array_equal(labels, [1, 1, 0, 0])
    assert matched[1] == 1
    labels, _ = T.match(np.zeros((0, 3)), 0.7, 0.3)
    np.testing.assert_array_equal(labels, [0, 0, 0])


def test_sample_respects_quota_and_fraction():
    labels = np.array([1] * 10 + [0] * 100 + [-1] * 5)
    pos, neg = T.sample(labels, 16, 0.25, np.random.default_rng(0))
    assert len(pos) == 4 and len(neg) == 12
    assert (labels[pos] == 1).all() and (labels[neg] == 0).all()
    pos, neg = T.sample(np.array([1, 0, 0]), 16, 0.5, np.random.default_rng(0))
    np.testing.assert_array_equal(pos, [0])
    np.testing.assert_array_equal(neg, [1, 2])


def test_rpn_targets_by_hand():
    anchors = np.array([[0, 0, 10, 10],     # IoU 1 with gt -> positive
                        [0, 0, 10, 20],     # IoU 0.5 -> ignored
                        [50, 50, 60, 60],   # IoU 0 -> negative
                        [-20, 0, 5, 10]],   # sticks out of the image -> ignored with straddle 0
                       np.float32)
    gt = np.array([[0, 0, 10, 10]], np.float32)
    t = T.rpn_targets(anchors, gt, 8, 0.5, straddle_thr=0, image_hw=(64, 64), rng=np.random.default_rng(0))
    np.testing.assert_array_equal(t["pos"], [0])
    np.testing.assert_array_equal(t["neg"], [2])
    np.testing.assert_allclose(t["deltas"], [[0, 0, 0, 0]], atol=1e-6)


def test_roi_targets_by_hand():
    proposals = np.array([[0, 0, 10, 10], [0, 0, 20, 10], [30, 30, 40, 40], [2, 0, 12, 10]], np.float32)
    gt = np.array([[0, 0, 10, 10], [30, 30, 42, 40]], np.float32)
    t = T.roi_targets(proposals, gt, np.array([3, 1]), batch_size_per_im=100, pos_fraction=1.0,
                      add_gt=False, rng=np.random.default_rng(0))
    # IoUs: p0-g0 1, p1-g0 0.5 (fg: >= 0.5), p2-g1 100/120, p3-g0 80/120: all fg
    assert t["num_fg"] == 4
    np.testing.assert_array_equal(t["labels"], [3, 3, 1, 3])
    np.testing.assert_allclose(t["rois"], proposals[[0, 1, 2, 3]])
    # proposal 2 -> gt 1: centre shift 1 of width 10 (x10), width log(12/10) (x5)
    np.testing.assert_allclose(t["deltas"][2], [10 * 1 / 10, 0, 5 * np.log(1.2), 0], rtol=1e-5, atol=1e-6)
    t = T.roi_targets(proposals[2:3], gt, np.array([3, 1]), 100, 0.25, rng=np.random.default_rng(0))
    # with the gts added: 3 candidates, proposal 2 and both gts are fg (25% of 100 >= 3)
    assert t["num_fg"] == 3 and (t["labels"] >= 0).all()
    t = T.roi_targets(np.array([[50, 50, 60, 60]], np.float32), np.zeros((0, 4)), np.zeros(0), 10, 0.25)
    np.testing.assert_array_equal(t["labels"], [-1])


def test_tensor_anchors_equal_numpy_anchors():
    gen = A.AnchorGenerator([[8], [16, ]], aspect_ratios=[0.5, 1.0, 2.0], strides=[4, 8], offset=0.5)
    feats = [paddle.zeros([1, 2, 3, 5]), paddle.zeros([1, 2, 2, 1])]
    for t, n in zip(gen.tensors(feats), gen([(3, 5), (2, 1)])):
        np.testing.assert_allclose(t.numpy(), n, rtol=1e-6)
