import json

import pytest

from relink_lib.cli import main
from relink_lib.pipeline.preflight import (
    PreflightError,
    check_chexpert_plus_root,
    check_mimic_root,
    check_models,
    check_paper_inputs,
    read_model_list,
)
from relink_lib.profiles import get_profile


def make_mimic(root):
    (root / "files").mkdir(parents=True)
    (root / "mimic-cxr-reports" / "files").mkdir(parents=True)
    for name in ("split", "chexpert", "metadata"):
        (root / f"mimic-cxr-2.0.0-{name}.csv.gz").write_bytes(b"")
    (root / "files" / "p10" / "p10000001" / "s50000001").mkdir(parents=True)
    (root / "files" / "p10" / "p10000001" / "s50000001" / "d1.jpg").write_bytes(b"jpg")
    (root / "mimic-cxr-reports" / "files" / "p10" / "p10000001").mkdir(parents=True)
    (root / "mimic-cxr-reports" / "files" / "p10" / "p10000001" / "s50000001.txt").write_text("FINDINGS: x")
    return root


def make_chexpert_plus(root):
    (root / "chexbert_labels").mkdir(parents=True)
    (root / "df_chexpert_plus_240401.csv").write_text(
        "path_to_image,report\ntrain/patient1/study1/view1_frontal.jpg,x\n"
    )
    (root / "train" / "patient1" / "study1").mkdir(parents=True)
    (root / "train" / "patient1" / "study1" / "view1_frontal.png").write_bytes(b"png")
    for s in ("impression", "findings", "report"):
        (root / "chexbert_labels" / f"{s}_fixed.json").write_text("")
    return root


def make_models(tmp_path):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "model.safetensors").write_bytes(b"")
    models = tmp_path / "models.json"
    models.write_text(json.dumps([{"name": "clip", "kind": "hf-clip", "path": str(ckpt)}]))
    return models


def test_complete_layouts_pass(tmp_path):
    params = get_profile(
        "paper",
        {
            "data": {
                "mimic_cxr_root": str(make_mimic(tmp_path / "m")),
                "chexpert_plus_root": str(make_chexpert_plus(tmp_path / "c")),
                "models": str(make_models(tmp_path)),
            }
        },
    )
    check_paper_inputs(params)


def test_each_missing_piece_is_named(tmp_path):
    root = make_mimic(tmp_path / "m")
    (root / "mimic-cxr-2.0.0-metadata.csv.gz").unlink()
    assert any("metadata" in p for p in check_mimic_root(root))
    cx = make_chexpert_plus(tmp_path / "c")
    (cx / "chexbert_labels" / "findings_fixed.json").unlink()
    assert check_chexpert_plus_root(cx) == [f"{cx}/chexbert_labels/findings_fixed.json: missing (CheXpert Plus file)"]
    assert "not set" in check_mimic_root(None)[0]
    empty = tmp_path / "empty"
    empty.mkdir()
    models = tmp_path / "m.json"
    models.write_text(json.dumps([{"name": "x", "path": str(empty)}]))
    assert "no weights" in check_models(models)[0]


def test_model_list_validation(tmp_path):
    with pytest.raises(PreflightError, match="kind='clip'"):
        read_model_list([{"name": "a", "path": "/x", "kind": "clip"}])
    with pytest.raises(PreflightError, match="entry 0"):
        read_model_list([{"path": "/x"}])
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(PreflightError, match="not valid JSON"):
        read_model_list(bad)


def test_cli_stops_before_any_step_when_inputs_are_missing(tmp_path, monkeypatch, capsys):
    for var in ("MIMIC_CXR_ROOT", "CHEXPERT_PLUS_ROOT", "MODELS"):
        monkeypatch.delenv(var, raising=False)
    assert main(["book", "--profile", "paper"]) == 2
    err = capsys.readouterr().err
    assert "MIMIC_CXR_ROOT is not set" in err and "CHEXPERT_PLUS_ROOT is not set" in err and "MODELS is not set" in err


def test_report_text_leak_detector_finds_a_report_in_outputs(tmp_path):
    import nbformat

    from relink_lib.pipeline.dryrun import report_text_leaks

    texts = [
        "FINDINGS: Small left apical pneumothorax measuring 12 mm. IMPRESSION: Pneumothorax.",
        "FINDINGS: The heart is normal in size. Lungs are clear. IMPRESSION: No acute process.",
    ]
    clean, leaky = nbformat.v4.new_notebook(), nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("x")
    cell.outputs = [nbformat.v4.new_output("stream", text="R@1 = 0.123\n")]
    clean.cells = [cell]
    shown = nbformat.v4.new_code_cell("y")
    shown.outputs = [
        nbformat.v4.new_output("execute_result", data={"text/html": f"<td>{texts[0][:50]}...</td>"}, execution_count=1)
    ]
    leaky.cells = [shown]
    nbformat.write(clean, tmp_path / "a.ipynb")
    nbformat.write(leaky, tmp_path / "b.ipynb")
    assert report_text_leaks(tmp_path, texts) == {"b.ipynb": 1}


def test_preflight_resolves_at_least_one_report_and_one_image(tmp_path):
    import shutil

    root = make_mimic(tmp_path / "m")
    reports = root / "mimic-cxr-reports"
    # unpacked one level too deep: mimic-cxr-reports/mimic-cxr-reports/files/...
    shutil.move(str(reports / "files"), str(tmp_path / "moved"))
    (reports / "mimic-cxr-reports").mkdir()
    shutil.move(str(tmp_path / "moved"), str(reports / "mimic-cxr-reports" / "files"))
    (reports / "files").mkdir()
    problems = check_mimic_root(root)
    assert len(problems) == 1 and "no report at mimic-cxr-reports/files/p*/p*/s*.txt" in problems[0]
    assert "one level deeper" in problems[0]
    for jpg in (root / "files").rglob("*.jpg"):
        jpg.unlink()
    assert any("no image at files/" in p for p in check_mimic_root(root))
    cx = make_chexpert_plus(tmp_path / "c")
    assert check_chexpert_plus_root(cx) == []
    (cx / "train" / "patient1" / "study1" / "view1_frontal.png").unlink()
    assert check_chexpert_plus_root(cx) == [
        f"{cx}: none of the first 1 path_to_image entries of df_chexpert_plus_240401.csv exists under the root"
    ]


def test_a_yaml_models_list_passes_the_preflight_like_json(tmp_path):
    from relink_lib.models.testing import write_tiny_clip

    ckpt = write_tiny_clip(tmp_path / "ckpt")
    listing = tmp_path / "models.yaml"
    listing.write_text(f"- {{name: general, kind: hf-clip, path: {ckpt}}}\n- name: auto\n  path: {ckpt}\n")
    assert check_models(listing) == []
    assert [(e.name, e.kind) for e in read_model_list(listing)] == [("general", "hf-clip"), ("auto", None)]
    as_json = tmp_path / "models.json"
    as_json.write_text(
        json.dumps([{"name": "general", "kind": "hf-clip", "path": str(ckpt)}, {"name": "auto", "path": str(ckpt)}])
    )
    assert read_model_list(as_json) == read_model_list(listing)


def test_model_list_names_every_bad_entry_at_once():
    with pytest.raises(PreflightError) as err:
        read_model_list([{"name": "a"}, {"name": "b", "path": "/x", "kind": "clip"}, "c"])
    message = str(err.value)
    assert "entry 0: missing path" in message and "kind='clip'" in message and "entry 2" in message


def test_checkpoint_kind_table_covers_every_kind_the_adapter_loads():
    from relink_lib.models import KINDS
    from relink_lib.models.catalog import CHECKPOINT_KINDS

    assert [row["kind"] for row in CHECKPOINT_KINDS] == list(KINDS)
    assert {len(row) for row in CHECKPOINT_KINDS} == {4}
    assert (
        "visual.head.proj"
        in next(r for r in CHECKPOINT_KINDS if r["kind"] == "open-clip")["heads (pre-projection -> joint)"]
    )
