import json
import math

import numpy as np
import pytest
import torch

from perception_shared.distributed import main_then_broadcast
from perception_shared.errors import DataError
from perception_shared.jsonio import json_ready, write_json


def test_nan_becomes_null_and_scalars_become_numbers(tmp_path):
    obj = {"ap": float("nan"), "r": np.float32(0.5), "n": np.int64(3), "t": torch.tensor(2.5),
           "inf": [math.inf, -math.inf], "arr": np.array([1.0, np.nan]), "ok": True, "name": "x"}
    path = write_json(tmp_path / "m.json", obj)
    back = json.loads(path.read_text())
    assert back == {"ap": None, "r": 0.5, "n": 3, "t": 2.5, "inf": [None, None], "arr": [1.0, None], "ok": True, "name": "x"}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_unknown_objects_are_an_error_not_a_silent_string():
    with pytest.raises(TypeError, match="object"):
        json_ready({"x": object()})


def test_main_then_broadcast_single_process_returns_and_raises():
    assert main_then_broadcast(lambda: {"n": 3}) == {"n": 3}

    def bad():
        raise DataError("a.mat: no key 'fixLocs'")

    with pytest.raises(DataError, match="fixLocs"):
        main_then_broadcast(bad)
