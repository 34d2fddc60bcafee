"""covseg's DICOM and NIfTI readers against independent tools on a realistic synthetic study: every series kind of
`covseg.pacs.series_kinds` (transfer syntaxes, shuffled and anonymised files, per-slice rescale, padding, coronal and
feet-first stacking, gantry tilt of either sense) read by covseg, dcm2niix and dicom2nifti and compared in patient
space; the NIfTI variants read by covseg and nibabel; and the time each reader takes for one series (median of 3).
The notebook `06_pacs` runs the same checks on a small phantom in `make test`; this script repeats them at a
clinical size. Synthetic data: these are agreement and speed figures, not accuracy figures of the paper.

Run: `.venv/bin/python bench/bench_readers.py` (about two minutes; writes the section of BENCHMARKS.md named in HEAD).
`--no-write`: print only."""
import sys, time, tempfile, statistics, warnings
from pathlib import Path
import numpy as np
import pandas as pd
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_data import machine, replace_section
from covseg.volume import Volume
from covseg.io import read_dicom_series, read_image
from covseg.phantom import make_phantom
from covseg.synth import _geometry
from covseg.pacs import (check_readers, write_series, read_with_dcm2niix, read_with_dicom2nifti, read_with_nibabel, compare,
                         NIFTI_KINDS, write_nifti_variant)

HEAD = "## Readers against dcm2niix, dicom2nifti and nibabel (`bench/bench_readers.py`)"
SHAPE, SPACING = (120, 512, 512), (2.5, 0.75, 0.75)

def timed(f, n:int=3)->float:
    ts = []
    for _ in range(n):
        t0 = time.perf_counter(); f(); ts.append(time.perf_counter() - t0)
    return statistics.median(ts)

def main():
    ph = make_phantom(SHAPE, spacing=SPACING, seed=0)
    vol = Volume(np.round(ph.image).astype(np.float32), _geometry(ph), 'phantom'); del ph
    work = Path(tempfile.mkdtemp())
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        kinds = check_readers(vol, work/'kinds')
        times = []
        for name, kw in (('explicit VR', {}), ('JPEG Lossless', dict(syntax='jpeg')), ('JPEG 2000', dict(syntax='jpeg2000'))):
            d = work/'time'/name.replace(' ', '_'); write_series(d/'dicom', vol, **kw)
            times.append(dict(series=name, covseg_s=timed(lambda: read_dicom_series(d/'dicom')),
                              dcm2niix_s=timed(lambda: read_with_dcm2niix(d/'dicom', work/'t'/str(time.time_ns()))),
                              dicom2nifti_s=timed(lambda: read_with_dicom2nifti(d/'dicom', work/'t'/str(time.time_ns())))))
        nifti = []
        for k in NIFTI_KINDS:
            f = write_nifti_variant(work/f"{len(nifti)}.nii.gz", vol, k)
            c = compare(read_image(f), read_with_nibabel(f))
            nifti.append(dict(kind=k, grid_mm=max(c['origin_mm'], c['spacing_mm']), direction=c['direction'], hu=c['max_hu']))
    return kinds, pd.DataFrame(times), pd.DataFrame(nifti)

def _g(x, fmt='.2g'): return '—' if x is None or (isinstance(x, float) and np.isnan(x)) else format(x, fmt)

def write_section(kinds, times, nifti):
    n = 'x'.join(map(str, SHAPE)); sp = 'x'.join(f"{s:g}" for s in SPACING)
    L = [f"Measured {time.strftime('%Y-%m-%d')} on: {machine()}. One synthetic chest ({n} voxels, {sp} mm, `covseg.phantom`) written "
         "as each series kind of `covseg.pacs` and read by covseg (SimpleITK/GDCM plus covseg's checks), dcm2niix (PyPI, its own "
         "decoders) and dicom2nifti (pydicom + pylibjpeg). Differences are the largest over the whole volume, after both readings "
         "are viewed in covseg's canonical orientation: grid = origin/spacing in mm, direction = cosines; voxels in HU. Gantry tilt "
         "has no common grid: each reading is compared with the phantom at its voxels' physical positions (median |HU|, central "
         "half of the field; interpolation costs a few HU).", '',
         '| series kind | covseg vs truth | covseg vs dcm2niix: grid / direction / voxels | covseg vs dicom2nifti: grid / direction / voxels | note |',
         '|---|---|---|---|---|']
    for k, r in kinds.iterrows():
        tilt = 'tilt' in k
        L.append(f"| {k} | {_g(r.covseg_vs_truth_hu, '.3g')} HU{' (median)' if tilt else ''} | "
                 + ' | '.join('—' if tilt or np.isnan(r.get(f'{t}_hu', np.nan)) else
                              f"{_g(r[f'{t}_grid_mm'])} mm / {_g(r[f'{t}_direction'])} / {_g(r[f'{t}_hu'], '.3g')} HU" for t in ('dcm2niix', 'dicom2nifti'))
                 + f" | {r.note or ''} |")
    L += ['', 'Time to read one series (median of 3; dcm2niix and dicom2nifti: conversion to NIfTI plus reading it with nibabel):', '',
          '| series | covseg | dcm2niix | dicom2nifti |', '|---|---|---|---|']
    L += [f"| {r.series} | {r.covseg_s:.2f} s | {r.dcm2niix_s:.2f} s | {r.dicom2nifti_s:.2f} s |" for r in times.itertuples()]
    L += ['', 'NIfTI variants written by nibabel, read by covseg and by nibabel:', '',
          '| NIfTI kind | grid | direction | voxels |', '|---|---|---|---|']
    L += [f"| {r.kind} | {_g(r.grid_mm)} mm | {_g(r.direction)} | {_g(r.hu, '.3g')} HU |" for r in nifti.itertuples()]
    L += ['', "Where they differ, and who is right, is said in `nbs/06_pacs.ipynb` (dicom2nifti refuses anonymised headers and "
          "tilted series; dcm2niix's `_Tilt_1` output is right for one sense of tilt only; SimpleITK alone misreads a NIfTI whose only "
          "transform is an sform disagreeing with `pixdim`, which covseg corrects)."]
    replace_section(HEAD, L)

if __name__ == '__main__':
    kinds, times, nifti = main()
    print(kinds.to_string()); print(times.to_string()); print(nifti.to_string())
    exact = [k for k in kinds.index if 'tilt' not in k]
    assert kinds.loc[exact, 'covseg_vs_truth_hu'].max() == 0, "covseg misread a lossless series"
    assert kinds.loc[exact, 'dcm2niix_hu'].max() == 0, "covseg and dcm2niix disagree"
    assert nifti[['grid_mm', 'direction', 'hu']].max().max() < 1e-3, "covseg and nibabel disagree on a NIfTI variant"
    if '--no-write' not in sys.argv: write_section(kinds, times, nifti)
