"""Report writer: FINDINGS and IMPRESSION from varied templates, with labels read off the text.

Each sentence carries the label assertions it makes (1 positive, -1 uncertain, 0 negated), so
the 14 labels are exactly what a rule-based labeler would extract from the written report:
an omitted finding is blank (NaN) even when the image shows it, as in MIMIC-CXR. Detail kept
(laterality, size, position, measurements, device tips) is controlled by ``report_detail``;
measurements carry noise; comparisons to the patient's prior study are made when one exists.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...labels import CHEXPERT_LABELS
from ..text import compose_text, wrap_report_section
from .anatomy import LOBES
from .prevalence import NEGATION_RATE, PATHOLOGIES, POSITIVE, UNCERTAIN

_N_DRAWS = 96
_ORD = {1: "1st", 2: "2nd", 3: "3rd"}


class _Draws:
    """Sequential uniforms of one study (pre-drawn, so report writing stays deterministic)."""

    def __init__(self, row: list[float]) -> None:
        self.row, self.k = row, 0

    def u(self) -> float:
        x = self.row[self.k % _N_DRAWS]
        self.k += 1
        return x

    def keep(self, p: float) -> bool:
        return self.u() < p

    def pick(self, options: list[str] | tuple[str, ...]) -> str:
        return options[min(int(self.u() * len(options)), len(options) - 1)]


class _Report:
    """Sentences of one section with their label assertions and detail flags."""

    def __init__(self) -> None:
        self.sentences: list[str] = []
        self.labels: dict[str, float] = {}
        self.asserting: list[tuple[str, dict[str, float]]] = []
        self.flags = {"device": False, "measurement": False, "laterality": False, "chronic": False}

    def add(self, sentence: str, labels: dict[str, float] | None = None, **flags: bool) -> None:
        sentence = " ".join(sentence.split()).replace(" ,", ",").replace(" .", ".")
        sentence = sentence[0].upper() + sentence[1:]
        if not sentence.endswith("."):
            sentence += "."
        self.sentences.append(sentence)
        if labels:
            self.asserting.append((sentence, dict(labels)))
        for label, value in (labels or {}).items():
            self.labels[label] = _merge(self.labels.get(label), value)
        for key, value in flags.items():
            self.flags[key] = self.flags[key] or bool(value)

    def text(self) -> str:
        return " ".join(self.sentences)


def _merge(old: float | None, new: float) -> float:
    """Labeler precedence: positive over uncertain over negative."""
    if old is None:
        return new
    rank = {1.0: 3, -1.0: 2, 0.0: 1}
    return old if rank[old] >= rank[new] else new


def _side_word(code: int) -> str:
    return {0: "right", 1: "left", 2: "bilateral"}[int(code)]


def _sgn_side(sgn: int) -> str:
    return "right" if sgn < 0 else "left"


STYLES: dict[str, dict[str, Any]] = {
    "internal": {
        "normal_impression": (
            "No acute cardiopulmonary process.",
            "No acute intrathoracic abnormality.",
            "No evidence of acute disease.",
            "Normal chest radiograph.",
        ),
        "clear": ("The lungs are clear.", "Lungs are well expanded and clear.", "The lungs are clear bilaterally."),
        "neg_join": ("No {items}.", "There is no {items}.", "No evidence of {items}."),
        "effusion": "pleural effusion",
        "ng": "enteric tube",
        "numbered": False,
        "compare": (
            "Compared to the prior study,",
            "As compared to the previous radiograph,",
            "In comparison with the study of ___,",
        ),
    },
    "external": {
        "normal_impression": (
            "No acute cardiopulmonary abnormality.",
            "No radiographic evidence of acute cardiopulmonary disease.",
            "Unremarkable chest.",
        ),
        "clear": ("Clear lungs.", "The lungs are without focal airspace disease.", "No focal airspace opacity."),
        "neg_join": ("No {items}.", "Negative for {items}.", "No {items} identified."),
        "effusion": "effusion",
        "ng": "Dobhoff tube",
        "numbered": True,
        "compare": ("Since the prior exam,", "Relative to the prior radiograph,", "Compared with prior,"),
    },
}

_NEG_NAMES = {
    "Pleural Effusion": "pleural effusion",
    "Pneumothorax": "pneumothorax",
    "Consolidation": "focal consolidation",
    "Edema": "pulmonary edema",
    "Pneumonia": "pneumonia",
    "Lung Opacity": "focal opacity",
    "Atelectasis": "atelectasis",
    "Lung Lesion": "suspicious pulmonary nodule",
    "Fracture": "displaced rib fracture",
    "Cardiomegaly": "cardiomegaly",
    "Enlarged Cardiomediastinum": "mediastinal widening",
}


def _write_one(
    s: dict[str, list], i: int, d: _Draws, site: str, detail: float, impression_only: bool
) -> dict[str, Any]:
    st = STYLES[site]
    F, I = _Report(), _Report()
    keep = lambda p: d.keep(min(1.0, p * detail))  # noqa: E731  detail kept with probability p * report_detail
    state = {l: int(s["state_" + l][i]) for l in PATHOLOGIES}
    prior = i - 1 if int(s["order"][i]) > 0 else None
    compare = prior is not None and d.keep(0.6)
    imp_items: list[tuple[str, dict[str, float], dict[str, bool]]] = []

    def imp(sentence: str, labels: dict[str, float], **flags: bool) -> None:
        imp_items.append((sentence, labels, flags))

    # acquisition and chronic anatomy
    if s["view"][i] == "AP" and keep(0.3):
        F.add(
            d.pick(
                (
                    "Portable AP upright view of the chest.",
                    "Single portable AP view of the chest.",
                    "Semi-upright AP radiograph.",
                )
            )
        )
    if abs(s["rotation"][i]) > 4 and keep(0.5):
        F.add(f"The patient is rotated to the {'right' if s['rotation'][i] > 0 else 'left'}", laterality=True)
    if s["inspiration"][i] < 0.93 and keep(0.6):
        F.add(
            d.pick(
                (
                    "Low lung volumes.",
                    "Lung volumes are low.",
                    "Low lung volumes with crowding of the bronchovascular markings.",
                )
            )
        )
    if s["exposure"][i] < -1.4 and keep(0.4):
        F.add(d.pick(("Underpenetrated study limits evaluation.", "The study is underpenetrated.")))
    if s["scoliosis"][i] != 0 and keep(0.7):
        F.add(f"{'Dextro' if s['scoliosis'][i] < 0 else 'Levo'}scoliosis of the thoracic spine", chronic=True)

    # devices
    dev_named = False
    tip_names = ("mid SVC", "cavoatrial junction", "right atrium")
    if s["et_tube"][i]:
        if keep(0.7):
            cm = max(0.5, round(float(s["et_tip_cm"][i]) + d.u() * 0.8 - 0.4, 1))
            F.add(
                d.pick(
                    (
                        "Endotracheal tube terminates {cm} cm above the carina.",
                        "ET tube tip is {cm} cm above the carina.",
                        "The endotracheal tube tip lies approximately {cm} cm from the carina.",
                    )
                ).format(cm=cm),
                {"Support Devices": 1.0},
                device=True,
                measurement=True,
            )
        else:
            F.add(
                d.pick(("Endotracheal tube in standard position.", "ET tube is in appropriate position.")),
                {"Support Devices": 1.0},
                device=True,
            )
        dev_named = True
        if prior is not None and not s["et_tube"][prior] and compare:
            imp("Interval placement of an endotracheal tube", {"Support Devices": 1.0}, device=True)
    if s["ng_tube"][i]:
        F.add(
            d.pick(
                (
                    "{ng} courses below the diaphragm with tip in the stomach.",
                    "{ng} tip is in the stomach.",
                    "{ng} extends into the stomach.",
                )
            ).format(ng=st["ng"]),
            {"Support Devices": 1.0},
            device=True,
        )
        dev_named = True
    if s["cvc"][i]:
        side = _sgn_side(s["cvc_side"][i]) if keep(0.9) else ""
        tip = tip_names[int(s["line_tip"][i])] if keep(0.75) else "expected position"
        F.add(
            f"{side} internal jugular central venous catheter terminates in the {tip}".strip(),
            {"Support Devices": 1.0},
            device=True,
            laterality=bool(side),
        )
        dev_named = True
    if s["picc"][i]:
        side = _sgn_side(s["picc_side"][i]) if keep(0.9) else ""
        tip = tip_names[int(s["line_tip"][i])] if keep(0.75) else "expected position"
        F.add(
            d.pick(("{side} PICC line terminates in the {tip}.", "{side} upper extremity PICC with tip in the {tip}."))
            .format(side=side, tip=tip)
            .strip(),
            {"Support Devices": 1.0},
            device=True,
            laterality=bool(side),
        )
        dev_named = True
    if s["chest_tube"][i]:
        side = _sgn_side(s["chest_tube_side"][i]) if keep(0.9) else ""
        F.add(f"{side} chest tube in place".strip(), {"Support Devices": 1.0}, device=True, laterality=bool(side))
        imp(f"{side} chest tube in place".strip(), {"Support Devices": 1.0}, device=True, laterality=bool(side))
        dev_named = True
    if s["pacemaker"][i] and keep(0.85):
        side = _sgn_side(s["pacer_side"][i]) if keep(0.8) else ""
        F.add(
            d.pick(
                (
                    "{side}-sided pacemaker with leads in the right atrium and right ventricle.",
                    "{side} chest wall dual-chamber pacemaker, leads unchanged.",
                    "{side} pectoral pacer device.",
                )
            )
            .format(side=side.capitalize() if side else "Chest wall")
            .replace("Chest wall-sided", "Chest wall"),
            {"Support Devices": 1.0},
            device=True,
            chronic=True,
            laterality=bool(side),
        )
        dev_named = True
    if s["port"][i] and keep(0.85):
        side = _sgn_side(s["port_side"][i]) if keep(0.8) else ""
        F.add(
            f"{side} chest wall port with catheter tip in the SVC".strip(),
            {"Support Devices": 1.0},
            device=True,
            chronic=True,
            laterality=bool(side),
        )
        dev_named = True
    if s["sternotomy"][i] and keep(0.8):
        F.add(
            d.pick(
                ("Median sternotomy wires are intact.", "Post-sternotomy changes.", "Intact median sternotomy wires.")
            ),
            {"Support Devices": 1.0},
            device=True,
            chronic=True,
        )
        dev_named = True
    if s["support_devices"][i] and not dev_named:
        F.add(
            d.pick(("Support devices are unchanged in position.", "Monitoring and support devices in place.")),
            {"Support Devices": 1.0},
        )
    if s["sd_uncertain"][i] and not s["support_devices"][i]:
        F.add("A linear density projecting over the chest may represent external tubing", {"Support Devices": -1.0})

    # heart and mediastinum
    cm = state["Cardiomegaly"]
    sev_words = ("mild", "moderate", "severe")
    if cm == POSITIVE:
        sev = sev_words[int(s["cardiomegaly_severity"][i])] if keep(0.8) else ""
        adverb = {"mild": "mildly ", "moderate": "moderately ", "severe": "severely ", "": ""}[sev]
        sev = sev + " " if sev else ""
        form = d.pick(("{sev}cardiomegaly.", "The heart is {adv}enlarged.", "Heart size is {adv}enlarged."))
        F.add(form.format(sev=sev, adv=adverb), {"Cardiomegaly": 1.0})
        imp(f"{sev}cardiomegaly", {"Cardiomegaly": 1.0})
    elif cm == UNCERTAIN:
        F.add(
            d.pick(("Heart size is borderline enlarged.", "The cardiac silhouette is possibly enlarged.")),
            {"Cardiomegaly": -1.0},
        )
    ec = state["Enlarged Cardiomediastinum"]
    if ec == POSITIVE:
        F.add(
            d.pick(
                (
                    "The mediastinum is widened.",
                    "Widened mediastinal silhouette.",
                    "Enlarged cardiomediastinal silhouette.",
                )
            ),
            {"Enlarged Cardiomediastinum": 1.0},
        )
    elif ec == UNCERTAIN:
        F.add(
            "The mediastinal contours are possibly widened, may be due to technique",
            {"Enlarged Cardiomediastinum": -1.0},
        )
    neg_heart = cm == 0 and ec == 0 and d.keep(NEGATION_RATE["Cardiomegaly"] / 0.8)
    if neg_heart:
        F.add(
            d.pick(
                (
                    "The cardiomediastinal silhouette is normal.",
                    "Heart size and mediastinal contours are normal.",
                    "Normal cardiomediastinal contours.",
                )
            ),
            {"Cardiomegaly": 0.0, "Enlarged Cardiomediastinum": 0.0},
        )

    # pleura
    eff = state["Pleural Effusion"]
    if eff == POSITIVE or (eff == UNCERTAIN and s["effusion_side"][i] >= 0):
        code = int(s["effusion_side"][i]) if s["effusion_side"][i] >= 0 else 2
        size = SIZE_WORDS[int(max(s["effusion_size"][i], 0))]
        side = _side_word(code) if keep(0.9) else ""
        size = size if keep(0.8) else ""
        plural = "s" if code == 2 and side else ""
        name = st["effusion"] + plural
        if eff == POSITIVE:
            sent = d.pick(
                (
                    "{size} {side} {name}.",
                    "There is a {size} {side} {name}.",
                    "{size} {side} {name} is present.",
                    "{side} {name}, {size}.",
                )
            )
            sent = sent.replace("There is a", "There are").replace(" is present", " are present") if plural else sent
            txt = " ".join(sent.format(size=size, side=side, name=name).replace(", .", ".").split())
            if compare and prior is not None and s["effusion_side"][prior] >= 0:
                delta = int(s["effusion_size"][i]) - int(s["effusion_size"][prior])
                txt = txt[:-1] + (", increased." if delta > 0 else ", decreased." if delta < 0 else ", unchanged.")
            F.add(txt, {"Pleural Effusion": 1.0}, laterality=bool(side))
            imp(f"{size} {side} {name}", {"Pleural Effusion": 1.0}, laterality=bool(side))
        else:
            F.add(f"Possible small {side} {name}".replace("  ", " "), {"Pleural Effusion": -1.0}, laterality=bool(side))
    elif eff == UNCERTAIN:
        F.add("Blunting of the costophrenic angle may reflect a trace effusion", {"Pleural Effusion": -1.0})
    ptx = state["Pneumothorax"]
    if ptx == POSITIVE or (ptx == UNCERTAIN and s["ptx_side"][i] != 0):
        side = _sgn_side(s["ptx_side"][i]) if s["ptx_side"][i] != 0 and keep(0.95) else ""
        size = SIZE_WORDS[int(max(s["ptx_size"][i], 0))] if keep(0.8) else ""
        if ptx == POSITIVE:
            txt = " ".join(
                d.pick(
                    (
                        "{size} {side} apical pneumothorax.",
                        "There is a {size} {side} pneumothorax.",
                        "{side} pneumothorax, {size}.",
                    )
                )
                .format(size=size, side=side)
                .replace(", .", ".")
                .split()
            )
            F.add(txt, {"Pneumothorax": 1.0}, laterality=bool(side))
            imp(f"{size} {side} pneumothorax", {"Pneumothorax": 1.0}, laterality=bool(side))
        else:
            F.add(
                f"Possible tiny {side} apical pneumothorax".replace("  ", " "),
                {"Pneumothorax": -1.0},
                laterality=bool(side),
            )
    elif ptx == UNCERTAIN:
        F.add("A skin fold limits evaluation for a small pneumothorax", {"Pneumothorax": -1.0})
    po = state["Pleural Other"]
    if po != 0:
        side = _sgn_side(s["pleural_side"][i]) if keep(0.85) else ""
        if po == POSITIVE:
            F.add(
                d.pick(
                    (
                        "{side} pleural thickening.",
                        "Calcified {side} pleural plaques.",
                        "{side} apical pleural thickening.",
                    )
                )
                .format(side=side)
                .strip(),
                {"Pleural Other": 1.0},
                laterality=bool(side),
                chronic=True,
            )
        else:
            F.add(
                f"Possible {side} pleural thickening".replace("  ", " "), {"Pleural Other": -1.0}, laterality=bool(side)
            )

    # lungs
    at = state["Atelectasis"]
    if at != 0:
        code = int(s["atelectasis_side"][i]) if s["atelectasis_side"][i] >= 0 else 2
        where = ("right basilar", "left basilar", "bibasilar")[code] if keep(0.85) else ""
        kind = d.pick(("", "plate-like ", "subsegmental ", "linear "))
        if at == POSITIVE:
            F.add(f"{where} {kind}atelectasis".strip(), {"Atelectasis": 1.0}, laterality=bool(where) and code < 2)
            imp(f"{where} atelectasis".strip(), {"Atelectasis": 1.0}, laterality=bool(where) and code < 2)
        else:
            F.add(
                d.pick(("{where} opacities likely reflect atelectasis.", "Possible {where} atelectasis."))
                .format(where=where)
                .replace("  ", " "),
                {"Atelectasis": -1.0},
                laterality=bool(where) and code < 2,
            )
    lobe = LOBES[int(s["opacity_lobe"][i])] if s["opacity_lobe"][i] >= 0 else None
    where = f" in the {lobe}" if lobe and keep(0.85) else ""
    lat = bool(where)
    co, pn, op = state["Consolidation"], state["Pneumonia"], state["Lung Opacity"]
    if co == POSITIVE:
        F.add(
            d.pick(
                (
                    "Focal consolidation{where}.",
                    "There is consolidation{where}.",
                    "Dense airspace consolidation{where}.",
                )
            ).format(where=where),
            {"Consolidation": 1.0},
            laterality=lat,
        )
    elif co == UNCERTAIN:
        F.add(f"Possible consolidation{where}", {"Consolidation": -1.0}, laterality=lat)
    if op == POSITIVE:
        F.add(
            d.pick(
                ("{kind} opacity{where}.", "There is {kind} opacity{where}.", "{kind} airspace opacity{where}.")
            ).format(kind=d.pick(("patchy", "hazy", "ill-defined", "focal")), where=where),
            {"Lung Opacity": 1.0},
            laterality=lat,
        )
    elif op == UNCERTAIN:
        F.add(f"Questionable opacity{where}", {"Lung Opacity": -1.0}, laterality=lat)
    if pn == POSITIVE:
        imp(
            d.pick(("Findings consistent with pneumonia{where}.", "Pneumonia{where}.", "{where} pneumonia."))
            .format(where=where if not where.startswith(" in") else where)
            .replace(". pneumonia", "pneumonia")
            .strip(),
            {"Pneumonia": 1.0},
            laterality=lat,
        )
    elif pn == UNCERTAIN:
        imp(
            d.pick(
                (
                    "Opacity{where} could represent pneumonia in the appropriate clinical setting.",
                    "Infection cannot be excluded{where}.",
                    "Possible early pneumonia{where}.",
                )
            ).format(where=where),
            {"Pneumonia": -1.0},
            laterality=lat,
        )
    ed = state["Edema"]
    if ed == POSITIVE:
        sev = sev_words[int(max(s["edema_severity"][i], 0))] + " " if keep(0.8) else ""
        F.add(
            d.pick(("{sev}pulmonary edema.", "{sev}interstitial edema.", "Findings of {sev}pulmonary edema.")).format(
                sev=sev
            ),
            {"Edema": 1.0},
        )
        if compare and prior is not None and s["edema_severity"][prior] >= 0:
            imp(
                f"{sev}pulmonary edema, "
                f"{'improved' if s['edema_severity'][prior] > s['edema_severity'][i] else 'unchanged'}",
                {"Edema": 1.0},
            )
        else:
            imp(f"{sev}pulmonary edema", {"Edema": 1.0})
    elif ed == UNCERTAIN:
        F.add(
            d.pick(
                (
                    "Possible mild interstitial edema.",
                    "Pulmonary vascular congestion without overt edema versus mild edema.",
                )
            ),
            {"Edema": -1.0},
        )
    le = state["Lung Lesion"]
    if le != 0:
        lloc = LOBES[int(s["lesion_lobe"][i])]
        mm = int(round(float(s["lesion_mm"][i]) + (d.u() - 0.5) * 3.0))
        kind = "mass" if mm >= 30 else "nodule"
        size = f"{mm} mm " if keep(0.6) else ""
        where = f" in the {lloc}" if keep(0.85) else ""
        if le == POSITIVE:
            F.add(f"{size}{kind}{where}", {"Lung Lesion": 1.0}, measurement=bool(size), laterality=bool(where))
            if compare and int(s["order"][i]) > 0:
                imp(
                    f"{'Slightly enlarging' if d.keep(0.5) else 'Stable'} {size}{kind}{where}",
                    {"Lung Lesion": 1.0},
                    measurement=bool(size),
                    laterality=bool(where),
                    chronic=True,
                )
            else:
                imp(
                    f"{size}{kind}{where}, CT recommended",
                    {"Lung Lesion": 1.0},
                    measurement=bool(size),
                    laterality=bool(where),
                )
        else:
            F.add(
                f"Possible nodular opacity{where}, possibly a nipple shadow",
                {"Lung Lesion": -1.0},
                laterality=bool(where),
            )
    fr = state["Fracture"]
    if fr != 0:
        side = _sgn_side(s["fracture_side"][i]) if keep(0.9) else ""
        rib = int(s["fracture_rib"][i])
        ribs = f"{side} {_ORD.get(rib, f'{rib}th')} rib" if keep(0.7) else f"{side} rib"
        if fr == POSITIVE:
            healed = bool(s["fracture_healed"][i])
            F.add(
                f"{'Healed' if healed else 'Acute'} {ribs} fracture".replace("  ", " "),
                {"Fracture": 1.0},
                laterality=bool(side),
                chronic=healed,
            )
            if not healed:
                imp(f"Acute {ribs} fracture".replace("  ", " "), {"Fracture": 1.0}, laterality=bool(side))
        else:
            F.add(
                f"Possible nondisplaced {ribs} fracture".replace("  ", " "), {"Fracture": -1.0}, laterality=bool(side)
            )

    # negations of what is absent
    negs = [
        l
        for l in (
            "Consolidation",
            "Pleural Effusion",
            "Pneumothorax",
            "Edema",
            "Pneumonia",
            "Lung Opacity",
            "Atelectasis",
            "Lung Lesion",
            "Fracture",
        )
        if state[l] == 0 and d.keep(NEGATION_RATE[l] * (1.6 if s["healthy"][i] else 1.0))
    ]
    # no mention if a positive/uncertain statement already covers the label
    if s["healthy"][i] and not negs:
        F.add(d.pick(st["clear"]))
    if negs:
        names = [_NEG_NAMES[l] for l in negs]
        items = (
            names[0] if len(names) == 1 else ", ".join(names[:-1]) + (", or " if len(names) > 2 else " or ") + names[-1]
        )
        F.add(d.pick(st["neg_join"]).format(items=items), {l: 0.0 for l in negs})

    # impression
    if not imp_items:
        hedged = [
            (sent, lab)
            for sent, lab in F.asserting
            if any(v in (1.0, -1.0) for k, v in lab.items() if k != "Support Devices")
        ]
        if hedged:
            imp_items.append((hedged[0][0], {k: v for k, v in hedged[0][1].items() if k != "Support Devices"}, {}))
        else:
            imp_items.append((d.pick(st["normal_impression"]), {}, {}))
    if compare and len(imp_items) and d.keep(0.5):
        s0, l0, f0 = imp_items[0]
        imp_items[0] = (f"{d.pick(st['compare'])} {s0[0].lower() + s0[1:]}", l0, f0)
    for k, (sent, sent_labels, flags) in enumerate(imp_items[:4]):
        sent = " ".join(sent.split())
        if st["numbered"] and len(imp_items) > 1:
            sent = f"{k + 1}. {sent[0].upper() + sent[1:]}"
        I.add(sent, sent_labels, **flags)

    sections = [I] if impression_only else [F, I]
    labels: dict[str, float] = {}
    for sec in sections:
        for label, value in sec.labels.items():
            labels[label] = _merge(labels.get(label), value)
    row: dict[str, Any] = {label: labels.get(label, np.nan) for label in CHEXPERT_LABELS}
    path_pos = any(labels.get(l) in (1.0, -1.0) for l in CHEXPERT_LABELS if l not in ("No Finding", "Support Devices"))
    row["No Finding"] = np.nan if path_pos else 1.0
    findings = "" if impression_only else F.text()
    impression = I.text()
    row.update(
        findings=findings,
        impression=impression,
        mentions_device=any(sec.flags["device"] for sec in sections),
        mentions_measurement=any(sec.flags["measurement"] for sec in sections),
        mentions_laterality=any(sec.flags["laterality"] for sec in sections),
        mentions_chronic=any(sec.flags["chronic"] for sec in sections),
    )
    return row


SIZE_WORDS: tuple[str, ...] = ("small", "moderate", "large")

_INDICATIONS = (
    "shortness of breath",
    "cough and fever",
    "chest pain",
    "hypoxia",
    "evaluate for pneumonia",
    "weakness",
    "evaluate line placement",
    "status post intubation",
    "pre-operative evaluation",
    "fall",
    "dyspnea on exertion",
)


def full_report(findings: str, impression: str, site: str, view: str, sex: str, has_prior: bool, key: int) -> str:
    """The whole free-text report with header sections, as stored in MIMIC-CXR / CheXpert Plus.

    Header content (indication, technique, comparison) is chosen from ``key`` deterministically; the
    loaders drop these sections, so only FINDINGS and IMPRESSION reach ``text``.
    """
    indication = _INDICATIONS[key % len(_INDICATIONS)]
    person = "man" if sex == "M" else "woman"
    exam = "CHEST (PORTABLE AP)" if view == "AP" else "CHEST (PA AND LAT)"
    technique = "Portable AP view of the chest." if view == "AP" else "PA and lateral views of the chest."
    comparison = "___" if has_prior else "None."
    if site == "external":
        parts = ["NARRATIVE:", exam, "", f"CLINICAL HISTORY: {indication}.", "", f"COMPARISON: {comparison}", ""]
        if findings:
            parts += [f"FINDINGS: {findings}", ""]
        parts += [f"IMPRESSION: {impression}"]
        return "\n".join(parts)
    parts = [
        "                                 FINAL REPORT",
        f" EXAMINATION:  {exam}",
        "",
        f" INDICATION:  ___-year-old {person} with {indication}.",
        "",
        f" TECHNIQUE:  {technique}",
        "",
        f" COMPARISON:  {comparison}",
        "",
    ]
    if findings:
        parts += [" FINDINGS:", "", wrap_report_section(findings), ""]
    parts += [" IMPRESSION:", "", wrap_report_section(impression), ""]
    return "\n".join(parts)


def write_reports(
    s: dict[str, np.ndarray],
    rng: np.random.Generator,
    site: str,
    report_detail: float = 1.0,
    text_mode: str = "findings+impression",
) -> list[dict[str, Any]]:
    """One row per study: findings, impression, text, full report, the 14 labels and detail flags."""
    if report_detail < 0:
        raise ValueError(f"report_detail={report_detail}: expected a number >= 0 (1 = default detail)")
    n = len(s["order"])
    draws = rng.random((n, _N_DRAWS))
    impression_only = rng.random(n) < (0.12 if site == "internal" else 0.05)
    sl = {k: v.tolist() for k, v in s.items() if k != "texture"}  # python scalars: much faster per-row access
    draws_l = draws.tolist()
    rows = []
    for i in range(n):
        d = _Draws(draws_l[i])
        row = _write_one(sl, i, d, site, report_detail, bool(impression_only[i]))
        row["text"] = compose_text(row["findings"], row["impression"], text_mode)
        rows.append(row)
    return rows
