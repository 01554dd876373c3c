"""Parsing IoU on hand-worked maps."""

import numpy as np
import pytest

from drop_cli.evaluation import parsing_iou, parsing_miou


def test_hand_worked_iou():
    target = np.array([[[0, 1, 1, 2]]])
    pred = np.array([[[0, 1, 2, 2]]])
    # class 0: 1/1; class 1: inter 1, union 2; class 2: inter 1, union 2; class 3 absent -> NaN
    iou = parsing_iou(pred, target, 4)
    assert iou[:3] == pytest.approx([1.0, 0.5, 0.5]) and np.isnan(iou[3])
    assert parsing_miou(pred, target, 4) == pytest.approx(0.5)
    assert parsing_miou(pred, target, 4, include_background=True) == pytest.approx(2 / 3)


def test_target_is_resized_to_the_prediction():
    target = np.zeros((1, 8, 4), np.uint8)
    target[:, 4:] = 1
    pred = np.zeros((1, 4, 2), np.uint8)
    pred[:, 2:] = 1
    assert parsing_miou(pred, target, 2, include_background=True) == 1.0
