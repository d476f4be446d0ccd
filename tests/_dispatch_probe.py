"""Run in a child process by ``test_numerics.py``: train a tiny ladder rung and extract its features,
then print one JSON line with the CPU capability in use and SHA-256 hashes of the weights and features.

The child starts with whatever environment the test gives it; ``relink_lib`` applies the numerical
mode named by ``RELINK_NUMERICS`` on import, as in a notebook kernel started by the pipeline.
"""

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
from safetensors.torch import load_file

import relink_lib  # noqa: F401  (applies RELINK_NUMERICS before torch dispatches anything)
from relink_lib.cohorts.synthetic.generate import make_synthetic_cohort
from relink_lib.features import get_features
from relink_lib.models.ladder import RungSpec, prepare_pixels, train_rung, training_texts
from relink_lib.models.stage import Rung
from relink_lib.numerics import record
from relink_lib.profiles import get_profile

out = Path(sys.argv[1])
cohort = make_synthetic_cohort(160, image_size=32, seed=3, n_jobs=1)
train = np.flatnonzero((cohort.pairs["split"] == "train").to_numpy())
spec = RungSpec(
    name="probe",
    description="dispatch probe",
    text="text",
    vision_width=32,
    vision_heads=2,
    text_width=32,
    text_heads=2,
    projection_dim=16,
    patch_size=8,
    vocab_size=512,
    max_length=48,
    epochs=2.0,
    batch_size=16,
)
pixels = prepare_pixels(cohort.load_images, train, 32, progress=False)
train_rung(
    spec, pixels, training_texts(cohort.pairs.iloc[train], "text"), out / "rung", seed=0, progress=False, threads=1
)
weights = load_file(str(out / "rung" / "model.safetensors"))
digest = hashlib.sha256()
for name in sorted(weights):
    digest.update(name.encode())
    digest.update(weights[name].numpy().tobytes())
params = get_profile("smoke", {"features": {"batch_size": 16}})
rung = Rung(index=0, name="probe", path=out / "rung", description="probe")
feats = get_features(params, cohort, rung, "test", progress=False)
fdigest = hashlib.sha256(np.ascontiguousarray(feats.image).tobytes() + np.ascontiguousarray(feats.text).tobytes())
print(json.dumps({"weights": digest.hexdigest(), "features": fdigest.hexdigest(), **record()}))
