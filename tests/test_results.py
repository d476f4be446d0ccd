import json
import math

import numpy as np
import pandas as pd
import pytest

from relink_lib.profiles import get_profile
from relink_lib.results import frame_from_records, jsonable, read_results, write_results


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


def test_tables_round_trip_through_their_json_records():
    frame = pd.DataFrame(
        {
            "model": ["a", "b", "c"],
            "match": pd.Series([None, "exact", "positive"], dtype=object),
            "pool_size": [10, 100, 1000],
            "full_database": [False, False, True],
            "lift": [1.5, math.inf, math.nan],
        }
    )
    records = jsonable(frame)
    assert records[1]["lift"] == "inf" and records[2]["lift"] is None and records[0]["match"] is None
    back = frame_from_records(json.loads(json.dumps(records, allow_nan=False)))
    pd.testing.assert_frame_equal(back, frame, check_dtype=False)
    assert back["match"].tolist() == [None, "exact", "positive"] and back["lift"].dtype.kind == "f"
    assert frame_from_records([]).empty and frame_from_records(None).empty
    assert frame_from_records(frame) is not frame
