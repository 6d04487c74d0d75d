#!/usr/bin/env python3
"""How far histology-seg tiles are from real H&E tiles, in nucleus size and three contrast statistics (issue 12).

Usage: /usr/bin/python3 perf/seg_realism.py DIR...   (each DIR a `perturb attack seg-fgsm ... --eps 0 --out DIR` folder:
originals.npy [N,3,S,S] and truth.npy [N,S,S], any tile size S); $REAL names the real tiles (default ../shared/data's
samples/histopathology: two TCGA/GTEx level-0 H&E tiles of 512x512; ../shared/data/README.md gives neither their
magnification nor their microns per pixel, so the factor that matches a generator size is measured here from the
nuclei, not read from the slide).

Per SxS tile (real tiles: the level-0 tiles averaged fxf, f = 1, 2, 4, 8 and the matching factor below, cut into SxS
crops that are more than half tissue, tissue = some channel below 0.85):
  nucleus_diam_px     median equivalent diameter, sqrt(4 area / pi), of the nuclei found by one rule on every tile:
                      4-connected components of 3 pixels or more of the tissue pixels in the darkest of three
                      classes of the red channel smoothed by a 1-pixel Gaussian (Otsu's criterion with two
                      thresholds; nuclei are the darkest in red, a two-class threshold takes in the purple cytoplasm
                      of the real tiles, and without the smoothing the sensor noise breaks nuclei of 10 px and more
                      into specks). Synthetic tiles also give the diameter of their true mask's components
                      (truth_diam_px), which says whether the rule measures what it should at that size (printed as
                      rule/truth); since the same rule measures both sides, its bias cancels in the matching factor.
  H_p95/p50           haematoxylin concentration (Ruifrok and Johnston colour deconvolution) at the 95th percentile of
                      the tissue pixels over its median: how much darker in haematoxylin nuclei are than the rest
  red_p50-p5          red channel, median minus 5th percentile over tissue pixels: the nucleus/tissue red contrast
  red_laplacian_mean  mean |4-neighbour Laplacian| of the red channel: fine texture, edges and noise
and for synthetic tiles the same from the true mask: red and haematoxylin means on nucleus and on other tissue pixels.

The matching factor for a generator size: f = (real nucleus diameter at level 0) / (the generator's, same rule). Then
the check: for each statistic, is the synthetic tiles' mean inside the 10th-90th percentile band of the real SxS crops
averaged by that f (an area average, so f need not be an integer)? f < 1 means the generator's nuclei are larger in
pixels than the real tiles' at level 0: from 0.7 to 1 the comparison is made at level 0 (f = 1, the finest there is)
and says so; below 0.7 there is nothing fine enough to compare against, and the script says NOT CHECKED.
"""
import glob, os, sys
import numpy as np
import torch
import torchvision.io as io
from scipy import ndimage

torch.set_num_threads(2)
REAL = os.environ.get('REAL', os.path.join(os.path.dirname(__file__), '..', '..', 'shared', 'data', 'samples', 'histopathology'))
VH = np.array([0.650, 0.704, 0.286]); VE = np.array([0.072, 0.990, 0.105])
VH /= np.linalg.norm(VH); VE /= np.linalg.norm(VE)
VR = np.cross(VH, VE); VR /= np.linalg.norm(VR)
UNMIX = np.linalg.inv(np.stack([VH, VE, VR]))
CONTRAST = ['H_p95/p50', 'red_p50-p5', 'red_laplacian_mean']


def haematoxylin(rgb):
    od = -np.log(np.clip(rgb, 1 / 255, 1)).reshape(3, -1).T
    return (od @ UNMIX)[:, 0].reshape(rgb.shape[1:])


def darkest_class(v, bins=64):
    """Upper edge of the darkest of three classes by Otsu's criterion (between-class variance over two thresholds)."""
    hist, edges = np.histogram(v, bins)
    p = hist / max(hist.sum(), 1); mid = (edges[:-1] + edges[1:]) / 2
    w = np.concatenate([[0], np.cumsum(p)]); m = np.concatenate([[0], np.cumsum(p * mid)])
    best, arg = -1.0, edges[1]
    for i in range(1, bins - 1):
        j = np.arange(i + 1, bins)
        w1, w2, w3 = w[i], w[j] - w[i], 1 - w[j]
        m1, m2, m3 = m[i], m[j] - m[i], m[-1] - m[j]
        s = m1 ** 2 / max(w1, 1e-12) + m2 ** 2 / np.maximum(w2, 1e-12) + m3 ** 2 / np.maximum(w3, 1e-12)
        k = np.argmax(s)
        if s[k] > best:
            best, arg = s[k], edges[i]
    return arg


def diameters(binary):
    lab, n = ndimage.label(binary)
    if n == 0:
        return np.zeros(0)
    area = ndimage.sum(np.ones_like(lab), lab, np.arange(1, n + 1))
    area = area[area >= 3]
    return np.sqrt(4 * area / np.pi)


def nuclei(rgb):
    """Equivalent diameters of the components the one rule finds."""
    tissue = rgb.min(0) < 0.85
    if tissue.sum() < 8:
        return np.zeros(0)
    red = ndimage.gaussian_filter(rgb[0], 1.0)
    return diameters(tissue & (red < darkest_class(red[tissue])))


def stats(rgb, mask=None):
    h = haematoxylin(rgb).reshape(-1)
    r = rgb[0].reshape(-1)
    tissue = rgb.reshape(3, -1).min(0) < 0.85
    out = {}
    if mask is not None:
        m = mask.reshape(-1) > 0
        out['red_nucleus'] = r[m].mean(); out['red_other'] = r[tissue & ~m].mean()
        out['H_nucleus'] = h[m].mean(); out['H_other'] = h[tissue & ~m].mean()
        t = diameters(mask > 0); out['truth_diam_px'] = np.median(t) if len(t) else np.nan
    d = nuclei(rgb); out['nucleus_diam_px'] = np.median(d) if len(d) else np.nan
    out['H_p95/p50'] = np.percentile(h[tissue], 95) / max(np.percentile(h[tissue], 50), 1e-3)
    out['red_p50-p5'] = np.percentile(r[tissue], 50) - np.percentile(r[tissue], 5)
    R = rgb[0]
    out['red_laplacian_mean'] = np.abs(4 * R[1:-1, 1:-1] - R[:-2, 1:-1] - R[2:, 1:-1] - R[1:-1, :-2] - R[1:-1, 2:]).mean()
    return out


def mean(rows, k):
    return np.nanmean([r[k] for r in rows])


def show(name, rows):
    print(f'{name}: ' + ' '.join(f'{k}={mean(rows, k):.3f}' for k in rows[0]))


files = sorted(glob.glob(os.path.join(REAL, 'tissue-level0*.png')))
if not files:
    sys.exit(f'error: no tissue-level0*.png under {REAL} (set $REAL)')
real = [io.read_image(p)[:3].double() / 255 for p in files]


def real_crops(f, s):
    """SxS crops, more than half tissue, of the level-0 tiles area-averaged by f."""
    rows = []
    for im in real:
        side = int(round(im.shape[1] / f))
        t = torch.nn.functional.adaptive_avg_pool2d(im[None], side)[0].numpy()
        for y in range(0, side - s + 1, s):
            for x in range(0, side - s + 1, s):
                crop = t[:, y:y + s, x:x + s]
                if (crop.min(0) < 0.85).mean() > 0.5:
                    rows.append(stats(crop))
    return rows


per_tile = [nuclei(im.numpy()) for im in real]
d0 = np.median(np.concatenate(per_tile))
print(f'real level-0 tiles ({len(files)}): nucleus_diam_px={d0:.2f} (per tile ' + ' / '.join(f'{np.median(d):.2f}' for d in per_tile) +
      '; the rule above on the whole 512x512 tiles; magnification and microns per pixel are not stated in the data '
      f'README: at the 0.5 um/px of a 20x scan this would be {d0 * 0.5:.1f} um, at 0.25 um/px (40x) {d0 * 0.25:.1f} um, '
      f'and nuclei of 5 to 10 um would put level 0 at {5 / d0:.1f} to {10 / d0:.1f} um/px)')
synth = []
for d in sys.argv[1:]:
    X = np.load(os.path.join(d, 'originals.npy')).astype(np.float64); T = np.load(os.path.join(d, 'truth.npy'))
    rows = [stats(X[i], T[i]) for i in range(len(X))]
    pooled = np.median(np.concatenate([nuclei(X[i]) for i in range(len(X))]))
    truth = np.median(np.concatenate([diameters(T[i] > 0) for i in range(len(X))]))
    synth.append((d, X.shape[-1], rows, pooled, truth))
sizes = sorted({e[1] for e in synth}) or [32]
for s in sizes:
    print(f'\n== tile size {s} ==')
    for f in (1, 2, 4, 8):
        if 512 // f >= s:
            show(f'real level-0 tiles averaged {f}x{f}, {s}x{s} crops ({len(real_crops(f, s))} tiles)', real_crops(f, s))
    for d, ds, rows, pooled, truth in synth:
        if ds != s:
            continue
        show(f'{d} ({len(rows)} tiles)', rows)
        f = d0 / pooled
        print(f'  nuclei by the rule, all tiles pooled: median {pooled:.2f} px (true mask {truth:.2f} px, rule/truth '
              f'{pooled / truth:.2f}); matching factor {d0:.2f} / {pooled:.2f} = {f:.2f}')
        if f < 0.7:
            print(f'  matching factor {f:.2f} < 0.7: the generator\'s nuclei are larger in pixels than the real tiles\' at '
                  f'level 0; no real tile here is fine enough to compare: NOT CHECKED')
            continue
        if f < 1:
            print(f'  matching factor {f:.2f} < 1: compared at level 0 (f = 1), where the real nuclei are {f:.2f}x the generator\'s in pixels')
            f = 1.0
        ref = real_crops(f, s)
        if len(ref) < 4:
            print(f'  matching factor {f:.2f}: only {len(ref)} real {s}x{s} crops at that factor: NOT CHECKED')
            continue
        verdict = []
        for k in ['nucleus_diam_px'] + CONTRAST:
            v = np.array([r[k] for r in ref]); v = v[~np.isnan(v)]
            lo, hi = np.percentile(v, 10), np.percentile(v, 90); m = mean(rows, k)
            verdict.append(lo <= m <= hi)
            print(f'  {k}: synthetic {m:.3f}, real at matching factor {f:.2f} ({len(ref)} crops) median {np.median(v):.3f}, '
                  f'10-90% [{lo:.3f}, {hi:.3f}], ratio {m / np.median(v):.2f}: {"inside" if verdict[-1] else "OUTSIDE"}')
        print(f'  realism at size {s}: {"yes" if all(verdict) else "no"} ({sum(verdict)} of {len(verdict)} statistics inside the real band)')
