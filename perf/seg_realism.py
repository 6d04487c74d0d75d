#!/usr/bin/env python3
"""How far histology-seg tiles are from real H&E tiles, in three contrast statistics (issue 12).

Usage: /usr/bin/python3 perf/seg_realism.py DIR...   (each DIR a `perturb attack seg-fgsm ... --eps 0 --out DIR` folder:
originals.npy [N,3,32,32] and truth.npy [N,32,32]); $REAL names the real tiles (default ../shared/data's
samples/histopathology, TCGA/GTEx level-0 H&E tiles).

Per 32x32 tile (real tiles: 2x2, 4x4 and 8x8 averages of the level-0 tiles, so their nuclei span a few pixels as the
generator's do; tiles more than half tissue, tissue = some channel below 0.85):
  H_p95/p50           haematoxylin concentration (Ruifrok and Johnston colour deconvolution) at the 95th percentile of
                      the tissue pixels over its median: how much darker in haematoxylin nuclei are than the rest
  red_p50-p5          red channel, median minus 5th percentile over tissue pixels: the nucleus/tissue red contrast
  red_laplacian_mean  mean |4-neighbour Laplacian| of the red channel: fine texture, edges and noise
and for synthetic tiles the same from the true mask: red and haematoxylin means on nucleus and on other tissue pixels.
"""
import glob, os, sys
import numpy as np
import torch
import torchvision.io as io

torch.set_num_threads(2)
REAL = os.environ.get('REAL', os.path.join(os.path.dirname(__file__), '..', '..', 'shared', 'data', 'samples', 'histopathology'))
VH = np.array([0.650, 0.704, 0.286]); VE = np.array([0.072, 0.990, 0.105])
VH /= np.linalg.norm(VH); VE /= np.linalg.norm(VE)
VR = np.cross(VH, VE); VR /= np.linalg.norm(VR)
UNMIX = np.linalg.inv(np.stack([VH, VE, VR]))


def stats(rgb, mask=None):
    od = -np.log(np.clip(rgb, 1 / 255, 1)).reshape(3, -1).T
    h = (od @ UNMIX)[:, 0]
    r = rgb[0].reshape(-1)
    tissue = rgb.reshape(3, -1).min(0) < 0.85
    out = {}
    if mask is not None:
        m = mask.reshape(-1) > 0
        out['red_nucleus'] = r[m].mean(); out['red_other'] = r[tissue & ~m].mean()
        out['H_nucleus'] = h[m].mean(); out['H_other'] = h[tissue & ~m].mean()
    out['H_p95/p50'] = np.percentile(h[tissue], 95) / max(np.percentile(h[tissue], 50), 1e-3)
    out['red_p50-p5'] = np.percentile(r[tissue], 50) - np.percentile(r[tissue], 5)
    R = rgb[0]
    out['red_laplacian_mean'] = np.abs(4 * R[1:-1, 1:-1] - R[:-2, 1:-1] - R[2:, 1:-1] - R[1:-1, :-2] - R[1:-1, 2:]).mean()
    return out


def show(name, rows):
    print(f'{name}: ' + ' '.join(f'{k}={np.mean([r[k] for r in rows]):.3f}' for k in rows[0]))


files = sorted(glob.glob(os.path.join(REAL, 'tissue-level0*.png')))
if not files:
    sys.exit(f'error: no tissue-level0*.png under {REAL} (set $REAL)')
for f in (2, 4, 8):
    rows = []
    for path in files:
        im = io.read_image(path)[:3].double() / 255
        t = torch.nn.functional.avg_pool2d(im[None], f)[0].numpy()
        n = t.shape[1]
        for y in range(0, n - 31, 32):
            for x in range(0, n - 31, 32):
                crop = t[:, y:y + 32, x:x + 32]
                if (crop.min(0) < 0.85).mean() > 0.5:
                    rows.append(stats(crop))
    show(f'real level-0 tiles averaged {f}x{f} ({len(rows)} tiles)', rows)
for d in sys.argv[1:]:
    X = np.load(os.path.join(d, 'originals.npy')); T = np.load(os.path.join(d, 'truth.npy'))
    show(f'{d} ({len(X)} tiles)', [stats(X[i].astype(np.float64), T[i]) for i in range(len(X))])
