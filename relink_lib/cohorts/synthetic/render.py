"""A vectorised chest radiograph renderer.

Images are drawn analytically on a per-image rotated/shifted coordinate grid ``(u, v)`` in
``[-1, 1]`` (u: image left = patient right .. image right; v: top .. bottom), in batches
``(B, H, W)``: a density map (soft tissue, lungs, heart, mediastinum, spine, ribs, clavicles,
diaphragm, findings, devices) goes through a site-specific film response, then noise. Findings
and devices are drawn only on the images that have them.
"""

from __future__ import annotations

import numpy as np

from .anatomy import LOBE_U, LOBE_V

_F = np.float32
THORAX_HALF_WIDTH_MM = 175.0
"""Physical half width of the thorax (u from 0 to 1) used to turn mm into image units."""


def _sig(x: np.ndarray) -> np.ndarray:
    """A cheap logistic: smoothstep of ``x / 6`` (same slope at 0, saturates at |x| = 3).

    float32, no transcendentals.
    """
    t = x * _F(1 / 6)
    t += _F(0.5)
    np.clip(t, 0, 1, out=t)
    return t * t * (_F(3) - _F(2) * t)


def _bump(d2: np.ndarray, w2: float | np.floating | np.ndarray) -> np.ndarray:
    """A cheap Gaussian ``exp(-d2 / w2)``: ``(1 - d2 / (3 w2))_+^2`` (compact support)."""
    t = _F(1) - d2 / (_F(3) * w2)
    np.maximum(t, 0, out=t)
    return t * t


def _seg_d2(u: np.ndarray, v: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared distance from pixels ``(b, H, W)`` to segments from ``a`` to ``b`` (each ``(b, 2)``)."""
    ax, ay = a[:, 0, None, None], a[:, 1, None, None]
    dx, dy = (b[:, 0] - a[:, 0])[:, None, None], (b[:, 1] - a[:, 1])[:, None, None]
    l2 = np.maximum(dx * dx + dy * dy, 1e-9)
    px, py = u - ax, v - ay
    t = np.clip((px * dx + py * dy) / l2, 0.0, 1.0)
    ex, ey = px - t * dx, py - t * dy
    return ex * ex + ey * ey


def _polyline(u: np.ndarray, v: np.ndarray, points: np.ndarray, width: float) -> np.ndarray:
    """Intensity ``(b, H, W)`` of a thin line through ``points`` ``(b, k, 2)``."""
    d2 = None
    for k in range(points.shape[1] - 1):
        dk = _seg_d2(u, v, points[:, k], points[:, k + 1])
        d2 = dk if d2 is None else np.minimum(d2, dk)
    assert d2 is not None  # points holds at least two points
    return _bump(d2, _F(width * width))


def _bilinear_matrix(n_out: int, n_in: int) -> np.ndarray:
    """``(n_out, n_in)`` matrix that linearly upsamples a length-``n_in`` signal."""
    pos = np.linspace(0, n_in - 1, n_out)
    lo = np.floor(pos).astype(int).clip(0, n_in - 2)
    w = pos - lo
    m = np.zeros((n_out, n_in), dtype=np.float32)
    m[np.arange(n_out), lo] = 1 - w
    m[np.arange(n_out), lo + 1] = w
    return m


def _smooth_field(field: np.ndarray, size: int) -> np.ndarray:
    """Bilinear upsampling of small fields ``(B, k, k)`` to ``(B, size, size)`` with two plain GEMMs."""
    B, k, _ = field.shape
    m = _bilinear_matrix(size, k)
    g = (field.reshape(B * k, k).astype(_F) @ m.T).reshape(B, k, size)  # (B, k, size)
    out = m @ g.transpose(1, 0, 2).reshape(k, B * size)  # (size, B * size)
    return np.ascontiguousarray(out.reshape(size, B, size).transpose(1, 0, 2))


def _coords(g: dict[str, np.ndarray], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-image rotated, shifted and (AP) magnified pixel-centre coordinates ``(B, size, size)``."""
    px = 2.0 / size
    grid = np.linspace(-1 + px / 2, 1 - px / 2, size, dtype=_F)
    U0, V0 = grid[None, None, :], grid[None, :, None]
    ang = np.deg2rad(g["rotation"]).astype(_F)[:, None, None]
    ca, sa = np.cos(ang), np.sin(ang)
    mag = np.where(g["view"] == "AP", 1.06, 1.0).astype(_F)[:, None, None]
    u = (ca * U0 - sa * V0) / mag + g["shift_u"].astype(_F)[:, None, None]
    v = (sa * U0 + ca * V0) / mag + g["shift_v"].astype(_F)[:, None, None]
    return u, v


def _up2(x: np.ndarray, axis: int) -> np.ndarray:
    """Linear 2x upsampling along ``axis`` (pixel-centre aligned, edges clamped)."""
    x = np.moveaxis(x, axis, -1)
    prev = np.concatenate([x[..., :1], x[..., :-1]], axis=-1)
    nxt = np.concatenate([x[..., 1:], x[..., -1:]], axis=-1)
    out = np.empty(x.shape[:-1] + (2 * x.shape[-1],), dtype=_F)
    out[..., 0::2] = _F(0.75) * x + _F(0.25) * prev
    out[..., 1::2] = _F(0.75) * x + _F(0.25) * nxt
    return np.moveaxis(out, -1, axis)


def _upsample(x: np.ndarray, size: int) -> np.ndarray:
    """Bilinear upsampling of ``(B, h, w)`` to ``(B, size, size)`` (identity when already that size)."""
    if x.shape[1] == size:
        return x
    if 2 * x.shape[1] == size and x.shape[2] == x.shape[1]:
        return _up2(_up2(x, 1), 2)
    return _smooth_field(x, size)


def render_batch(
    s: dict[str, np.ndarray],
    rows: np.ndarray,
    size: int,
    rng: np.random.Generator,
    site: str,
    image_noise: float = 1.0,
    noise_bank: np.ndarray | None = None,
) -> np.ndarray:
    """Render studies ``rows`` of the state dict ``s`` as uint8 images ``(len(rows), size, size)``.

    ``noise_bank`` (``(K, size, size)`` standard normals) supplies the pixel noise frames; each image
    takes a random frame with random flips (default: a fresh bank of 16 frames for this batch).
    """
    B = len(rows)
    g = {k: v[rows] for k, v in s.items()}
    col = lambda k: g[k].astype(_F)[:, None, None]  # noqa: E731
    px = 2.0 / size  # one pixel in image units
    lw = max(0.012, 0.8 * px)  # device line width
    # smooth anatomy at half resolution (upsampled), fine detail at full resolution on the rows that have it
    low = size // 2 if size >= 64 else size
    u, v = _coords(g, low)
    mag = np.where(g["view"] == "AP", 1.06, 1.0).astype(_F)[:, None, None]
    # soft tissue
    body = _sig((1.0 - (u / _F(0.93)) ** 2 - ((v - 0.25) / _F(1.45)) ** 2) * _F(14.0))
    dens = _F(0.42) * body
    # spine (with scoliosis) and mediastinum
    spine_u = col("scoliosis") / _F(90.0) * np.sin(_F(np.pi) * (v + 1) / 2)
    spine = _sig((_F(0.055) - np.abs(u - spine_u)) * _F(80.0))
    med = _sig((col("med_w") - np.abs(u - 0.03 - spine_u * 0.5)) * _F(40.0)) * _sig((0.35 - v) * _F(12.0))
    # lungs
    lw_, lh = col("lung_w"), col("lung_h") * col("inspiration")
    lung_sides = []
    for sgn in (-1.0, 1.0):  # image left = patient right, image right = patient left
        cx = _F(sgn * 0.40) * lw_
        a = _F(0.30) * lw_
        xn = (u - cx) / a
        dome_v = _F(0.42) * lh + _F(0.05) - (col("dome") if sgn < 0 else 0)
        apex = _F(-0.70) + _F(0.22) * xn * xn
        floor = dome_v - _F(0.16) * (1 - np.minimum(xn * xn, 1)) + _F(0.05) * np.maximum(sgn * xn, 0)
        medial = _sig((1 - np.abs(xn)) * _F(14.0))
        lung_sides.append(medial * _sig((v - apex) * _F(30.0)) * _sig((floor - v) * _F(30.0)))
    lungR, lungL = lung_sides
    lung = np.maximum(lungR, lungL)
    # heart
    hx, hy = _F(0.07), _F(0.30) * lh + _F(0.06)
    rx = col("ctr") * _F(0.93) * mag
    heart = _sig((1 - ((u - hx) / rx) ** 2 - ((v - hy) / _F(0.27)) ** 2) * _F(7.0))
    air = lung * (1 - heart) * (1 - med)
    # lung texture: the patient's vascular pattern, smooth upsampling of an 8x8 field
    tex = _smooth_field(g["texture"], low)
    hil = _bump(((np.abs(u) - 0.16) ** 2) / _F(0.05) + ((v + 0.05) ** 2) / _F(0.08), 1.0)
    dens -= _F(0.36) * air
    dens += air * (_F(0.025) * tex + _F(0.07) * hil)
    dens += _F(0.10) * spine * body + _F(0.12) * heart + _F(0.06) * med
    # ribs: posterior ribs curve down laterally
    ph = (v - _F(0.22) * np.abs(u) - _F(0.18) * u * u) / col("rib_spacing") + col("rib_phase")
    tri = np.abs(ph - np.floor(ph) - _F(0.5)) * _F(4) - _F(1)  # triangle wave in [-1, 1]
    ribs = _sig((tri - _F(0.45)) * _F(9.0)) * _sig((np.abs(u) - 0.06) * _F(30.0)) * _sig((0.55 - v) * _F(8.0))
    dens += _F(0.09) * ribs * body
    # clavicles: both at once, a band along a line rising laterally from the manubrium
    au = np.abs(u)
    clav_line = _F(-0.74) - _F(0.22) * (au - _F(0.07))
    dens += (
        _F(0.12) * _bump((v - clav_line) ** 2, 0.035**2) * _sig((au - 0.07) * _F(60.0)) * _sig((0.62 - au) * _F(40.0))
    )
    lung_of = {-1: lungR, 1: lungL}

    def sub(mask: np.ndarray) -> np.ndarray:
        return np.flatnonzero(mask)

    # effusion: fluid fills the base with a meniscus rising laterally
    for side_code, sgns in ((0, (-1,)), (1, (1,)), (2, (-1, 1))):
        for sgn in sgns:
            i = sub(g["effusion_side"] == side_code)
            if not len(i):
                continue
            size_i = g["effusion_size"][i].astype(_F)[:, None, None]
            h = _F(0.10) + _F(0.14) * size_i
            base = _F(0.42) * lh[i] + _F(0.05)
            level = base - h - _F(0.5) * h * np.clip(_F(sgn) * (u[i] - _F(sgn * 0.4)) / _F(0.3), 0, 1)
            dens[i] += _F(0.30) * lung_of[sgn][i] * _sig((v[i] - level) * _F(25.0))
    # focal opacity at a lobe
    i = sub(g["opacity_lobe"] >= 0)
    if len(i):
        lobe = g["opacity_lobe"][i]
        cu = (LOBE_U[lobe] + g["opacity_du"][i]).astype(_F)[:, None, None]
        cv = (LOBE_V[lobe] + g["opacity_dv"][i]).astype(_F)[:, None, None]
        r = g["opacity_radius"][i].astype(_F)[:, None, None]
        blob = _bump((u[i] - cu) ** 2 + (v[i] - cv) ** 2, 2 * r * r)
        dens[i] += _F(0.22) * blob * lung[i] * (_F(0.85) + _F(0.15) * tex[i])
    # edema: bilateral perihilar haze
    i = sub(g["edema_severity"] >= 0)
    if len(i):
        amp = (_F(0.06) + _F(0.05) * g["edema_severity"][i].astype(_F))[:, None, None]
        haze = _bump(((np.abs(u[i]) - 0.2) ** 2) / _F(0.09) + ((v[i] - 0.05) ** 2) / _F(0.2), 1.0)
        dens[i] += amp * haze * lung[i]
    # pleural other: thickened lateral pleura
    i = sub(g["pleural_other"])
    if len(i):
        sgn = g["pleural_side"][i].astype(_F)[:, None, None]
        xn = (u[i] - sgn * _F(0.40) * lw_[i]) / (_F(0.30) * lw_[i])
        dens[i] += _F(0.14) * _bump((np.abs(xn) - 0.93) ** 2, 0.06**2) * _sig(sgn * xn * _F(10.0)) * body[i]
    # ---- full resolution: upsample the smooth part, add thin and sharp detail on the rows that have it
    dens = _upsample(dens, size)

    def full(i: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return _coords({k: g[k][i] for k in ("rotation", "view", "shift_u", "shift_v")}, size)

    # atelectasis: plate-like band above the diaphragm
    for side_code, sgns in ((0, (-1,)), (1, (1,)), (2, (-1, 1))):
        for sgn in sgns:
            i = sub(g["atelectasis_side"] == side_code)
            if not len(i):
                continue
            uf, vf = full(i)
            y0 = _F(0.42) * lh[i] - _F(0.06) + _F(0.04) * (uf - _F(sgn * 0.4))
            band = _bump((vf - y0) ** 2, max(0.025, px) ** 2)
            dens[i] += _F(0.16) * band * _upsample(lung_of[sgn][i], size)
    # lung lesion: sharp round nodule
    i = sub(g["lesion"])
    if len(i):
        uf, vf = full(i)
        r = (g["lesion_mm"][i] / 2 / THORAX_HALF_WIDTH_MM).astype(_F)[:, None, None]
        d = np.sqrt(
            (uf - g["lesion_u"][i].astype(_F)[:, None, None]) ** 2
            + (vf - g["lesion_v"][i].astype(_F)[:, None, None]) ** 2
        )
        dens[i] += _F(0.22) * _sig((r - d) / _F(px * 0.5))
    # pneumothorax: lucent rim without markings and a visceral pleural line
    for sgn in (-1, 1):
        i = sub(g["ptx_side"] == sgn)
        if not len(i):
            continue
        uf, vf = full(i)
        lung_i = _upsample(lung_of[sgn][i], size)
        w = (_F(0.10) + _F(0.08) * g["ptx_size"][i].astype(_F))[:, None, None]
        rr = np.sqrt(((uf - _F(sgn * 0.40) * lw_[i]) / (_F(0.30) * lw_[i])) ** 2 + ((vf + 0.05) / _F(0.70)) ** 2)
        edge = 1 - w
        rim = lung_i * _sig((rr - edge) * _F(60.0))
        dens[i] -= rim * (_F(0.05) + _F(0.025) * _upsample(tex[i], size) + _F(0.07) * _upsample(hil[i], size))
        dens[i] += _F(0.12) * lung_i * _bump((rr - edge) ** 2, max(0.012, px) ** 2)
    # rib fracture: a step (acute) or a callus (healed) on the patient's rib
    i = sub(g["fracture"])
    if len(i):
        uf, vf = full(i)
        fu = (g["fracture_side"][i] * 0.55).astype(_F)[:, None, None]
        fv = (-0.55 + 0.11 * (g["fracture_rib"][i] - 3)).astype(_F)[:, None, None]
        spot = _bump((uf - fu) ** 2 + (vf - fv) ** 2, max(0.03, 1.5 * px) ** 2)
        sign = np.where(g["fracture_healed"][i], 1.0, -1.0).astype(_F)[:, None, None]
        dens[i] += _F(0.12) * sign * spot
    # devices
    carina_v = _F(-0.22)
    cm_per_unit = THORAX_HALF_WIDTH_MM / 10.0
    i = sub(g["et_tube"])
    if len(i):
        uf, vf = full(i)
        tip = carina_v - (g["et_tip_cm"][i] / cm_per_unit).astype(_F)
        pts = np.stack(
            [
                np.stack([np.full_like(tip, 0.01), np.full_like(tip, -1.1)], 1),
                np.stack([np.full_like(tip, 0.0), tip], 1),
            ],
            1,
        )
        dens[i] += _F(0.30) * _polyline(uf, vf, pts, lw * 1.4)
    i = sub(g["ng_tube"])
    if len(i):
        uf, vf = full(i)
        k = len(i)
        pts = np.tile(np.array([[[-0.02, -1.1], [0.02, 0.25], [0.16, 0.55], [0.30, 0.62]]], _F), (k, 1, 1))
        pts[:, 3, 0] += rng.normal(0, 0.04, k).astype(_F)
        dens[i] += _F(0.26) * _polyline(uf, vf, pts, lw)
    tip_v = np.array([-0.30, -0.18, -0.06], _F)
    i = sub(g["cvc"])
    if len(i):
        uf, vf = full(i)
        sgn = g["cvc_side"][i].astype(_F)
        tv = tip_v[g["line_tip"][i]]
        pts = np.stack(
            [
                np.stack([sgn * 0.30, np.full_like(sgn, -1.08)], 1),
                np.stack([sgn * 0.13, np.full_like(sgn, -0.62)], 1),
                np.stack([np.full_like(sgn, -0.05), np.full_like(sgn, -0.45)], 1),
                np.stack([np.full_like(sgn, -0.06), tv], 1),
            ],
            1,
        )
        dens[i] += _F(0.26) * _polyline(uf, vf, pts, lw)
    i = sub(g["picc"])
    if len(i):
        uf, vf = full(i)
        sgn = g["picc_side"][i].astype(_F)
        tv = tip_v[g["line_tip"][i]]
        pts = np.stack(
            [
                np.stack([sgn * 1.0, np.full_like(sgn, -0.50)], 1),
                np.stack([sgn * 0.55, np.full_like(sgn, -0.66)], 1),
                np.stack([sgn * 0.15, np.full_like(sgn, -0.55)], 1),
                np.stack([np.full_like(sgn, -0.06), tv], 1),
            ],
            1,
        )
        dens[i] += _F(0.22) * _polyline(uf, vf, pts, lw)
    i = sub(g["chest_tube"])
    if len(i):
        uf, vf = full(i)
        sgn = g["chest_tube_side"][i].astype(_F)
        pts = np.stack(
            [
                np.stack([sgn * 0.95, np.full_like(sgn, 0.45)], 1),
                np.stack([sgn * 0.62, np.full_like(sgn, 0.05)], 1),
                np.stack([sgn * 0.45, np.full_like(sgn, -0.50)], 1),
            ],
            1,
        )
        dens[i] += _F(0.32) * _polyline(uf, vf, pts, lw * 2.0)
    i = sub(g["pacemaker"])
    if len(i):
        uf, vf = full(i)
        sgn = g["pacer_side"][i].astype(_F)[:, None, None]
        box = _sig((_F(0.085) - np.abs(uf - sgn * 0.52)) / _F(px * 0.6)) * _sig(
            (_F(0.06) - np.abs(vf + 0.70)) / _F(px * 0.6)
        )
        sg = g["pacer_side"][i].astype(_F)
        leads = np.stack(
            [
                np.stack([sg * 0.50, np.full_like(sg, -0.66)], 1),
                np.stack([sg * 0.12, np.full_like(sg, -0.45)], 1),
                np.stack([np.full_like(sg, 0.0), np.full_like(sg, 0.05)], 1),
                np.stack([np.full_like(sg, 0.14), np.full_like(sg, 0.38)], 1),
            ],
            1,
        )
        dens[i] += _F(0.55) * box + _F(0.28) * _polyline(uf, vf, leads, lw)
    i = sub(g["port"])
    if len(i):
        uf, vf = full(i)
        sgn = g["port_side"][i].astype(_F)
        d = np.sqrt((uf - (sgn * 0.45)[:, None, None]) ** 2 + (vf + 0.52) ** 2)
        cath = np.stack(
            [
                np.stack([sgn * 0.45, np.full_like(sgn, -0.52)], 1),
                np.stack([sgn * 0.15, np.full_like(sgn, -0.62)], 1),
                np.stack([np.full_like(sgn, -0.06), np.full_like(sgn, -0.20)], 1),
            ],
            1,
        )
        dens[i] += _F(0.50) * _sig((_F(0.045) - d) / _F(px * 0.6)) + _F(0.22) * _polyline(uf, vf, cath, lw)
    i = sub(g["sternotomy"])
    if len(i):
        uf, vf = full(i)
        acc = np.zeros((len(i), size, size), _F)
        nw = g["n_wires"][i]
        for k in range(7):
            has = (k < nw).astype(_F)[:, None, None]
            wv = (-0.50 + k * 0.75 / np.maximum(nw - 1, 1)).astype(_F)[:, None, None]
            d = np.sqrt((uf - 0.01) ** 2 + ((vf - wv) * 1.6) ** 2)
            acc += has * _bump((d - _F(0.022)) ** 2, max(0.008, 0.6 * px) ** 2)
        dens[i] += _F(0.40) * np.minimum(acc, 1)
    # site marker (a burned-in laterality marker)
    mu, mv = (0.82, -0.86) if site == "internal" else (-0.80, -0.84)
    grid = np.linspace(-1 + px / 2, 1 - px / 2, size, dtype=_F)
    U0, V0 = grid[None, None, :], grid[None, :, None]
    marker = _sig((_F(max(0.06, 1.2 * px)) - np.abs(U0 - mu)) / _F(px * 0.5)) * _sig(
        (_F(max(0.04, px)) - np.abs(V0 - mv)) / _F(px * 0.5)
    )
    # film response (rational, no transcendentals): exposure shifts the curve; the external site looks harder
    expo = col("exposure")
    np.maximum(dens, 0, out=dens)
    if site == "internal":
        k = _F(2.6) * (1 - _F(0.12) * expo)
        kd = k * dens
        img = kd / (1 + kd) * ((1 + k * _F(0.9)) / (k * _F(0.9)))
    else:
        k = _F(3.4) * (1 - _F(0.10) * expo)
        x = np.clip(k * dens - _F(0.25), -3, 3)
        x2 = x * x
        img = x * (27 + x2) / (27 + 9 * x2) * _F(0.62) + _F(0.30)
    np.maximum(img, marker * _F(0.95), out=img)
    # noise: smooth low-frequency field, quantum noise from a shared bank of frames (random flips), vignetting
    lf = _smooth_field(rng.standard_normal((B, 4, 4)).astype(_F), size)
    if noise_bank is None or noise_bank.shape[1:] != (size, size):
        noise_bank = make_noise_bank(size, 16, rng)
    pick = rng.integers(0, len(noise_bank), B)
    noise = noise_bank[pick]
    flip = rng.random((2, B)) < 0.5
    noise[flip[0]] = noise[flip[0], ::-1]
    noise[flip[1]] = noise[flip[1], :, ::-1]
    sigma = _F((0.022 if site == "internal" else 0.03) * image_noise)
    img += _F(0.025 * image_noise) * lf
    img += sigma * noise
    img *= 1 - _F(0.08) * (U0**2 + V0**2)
    img *= 255
    np.clip(img, 0, 255, out=img)
    return np.rint(img).astype(np.uint8)


def make_noise_bank(size: int, n_frames: int, rng: np.random.Generator) -> np.ndarray:
    """``n_frames`` standard-normal noise frames ``(n_frames, size, size)`` float32, shared across a batch."""
    return rng.standard_normal((n_frames, size, size), dtype=_F)
