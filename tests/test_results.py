import json
import math

import numpy as np
import pandas as pd
import pytest

from relink_lib.profiles import get_profile
from relink_lib.results import read_results, write_results


def test_results_json_carries_provenance_and_converts_types():
    params = get_profile("smoke")
    frame = pd.DataFrame({"pool_size": [10, None], "recall": [0.5, np.float32(0.25)]})
    path = write_results(
        params,
        "unit",
        {"table": frame, "x": np.int64(3), "nan": math.nan, "arr": np.ones(2)},
        cohort="synthetic",
        model="rung0",
        wall_time_s=1.23456,
    )
    body = json.loads(path.read_text())
    assert path.parent.name == "smoke" and path.name == "unit.json"
    assert body["x"] == 3 and body["nan"] is None and body["arr"] == [1.0, 1.0]
    assert body["table"][1]["recall"] == pytest.approx(0.25)
    prov = body["provenance"]
    assert prov["profile"] == "smoke" and prov["seed"] == params["seed"] and prov["simulation"] is True
    assert prov["cohort"] == "synthetic" and prov["model"] == "rung0" and prov["wall_time_s"] == 1.235
    assert prov["packages"]["torch"].startswith("2.13")
    assert read_results("smoke", "unit")["x"] == 3


def test_missing_results_name_the_file():
    with pytest.raises(FileNotFoundError, match="nope.json"):
        read_results("smoke", "nope")
