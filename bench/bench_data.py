"""Benchmark of the data layer (issue: foundation): preparation time per 512x512x~300 study and the time
to deliver one cached 20x256x256 training sample. Writes its figures into BENCHMARKS.md (section
'Data layer') with the machine it ran on. Run: `.venv/bin/python bench/bench_data.py`."""
import os, sys, time, json, shutil, platform, tempfile, statistics, re, resource
from pathlib import Path
import numpy as np
import torch
from covseg.volume import Volume, Geometry
from covseg.io import write_image, read_dicom_series
from covseg.phantom import make_phantom
from covseg.synth import write_ricord, _geometry
from covseg.datasets import Case, read_ricord, convert_ricord
from covseg.preprocess import cache_case
from covseg.cache import load_sample, PAPER_GRIDS, entry_dir

def machine()->str:
    cpu = next((l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name')), platform.processor())
    mem = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM; Python {platform.python_version()}, torch {torch.__version__}"

def timed(f, n):
    ts = []
    for _ in range(n):
        t0 = time.perf_counter(); f(); ts.append(time.perf_counter() - t0)
    return ts

def main(shape=(300, 512, 512), reps=3):
    tmp = Path(tempfile.mkdtemp(prefix='covseg-bench-'))
    try:
        t0 = time.perf_counter(); p = make_phantom(shape, seed=1); t_ph = time.perf_counter() - t0
        g = _geometry(p)
        img = write_image(Volume(np.round(p.image).astype(np.int16), g), tmp/'study.nii.gz')
        msk = write_image(Volume(p.infection, g), tmp/'study_mask.nii.gz')
        case = Case('mosmed', 'bench', 'bench', str(img), str(msk))
        prep = timed(lambda: cache_case(case, tmp/'cache', PAPER_GRIDS, force=True), reps)
        e = entry_dir(tmp/'cache', PAPER_GRIDS[1], 'mosmed', 'bench')
        load_sample(e)
        samp = timed(lambda: load_sample(e), 200)
        # RICORD: one full-size DICOM study (250 x 512 x 512) converted to NIfTI (read series, fill polygons, write)
        write_ricord(tmp/'ricord', n=1, seed=1, size='full')
        (c,), _ = read_ricord(tmp/'ricord')
        conv = timed(lambda: convert_ricord(c, tmp/'conv'), 1)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        rows = [
            ("phantom generation, 300x512x512 (once)", f"{t_ph:.1f} s", "—"),
            (f"prepare one {shape[0]}x{shape[1]}x{shape[2]} NIfTI study: read + checks + both paper grids + write (median of {reps})", f"{statistics.median(prep):.2f} s", "≤ 3 s"),
            ("deliver one cached 20x256x256 sample (memory-mapped int16 -> float32, median of 200)", f"{1000 * statistics.median(samp):.2f} ms (p95 {1000 * np.percentile(samp, 95):.2f} ms)", "≤ 10 ms"),
            ("convert one RICORD DICOM study, 250x512x512, to NIfTI image + mask", f"{conv[0]:.2f} s", "—"),
            ("peak resident memory of the whole benchmark", f"{rss:.1f} GiB", "—"),
        ]
        return rows
    finally: shutil.rmtree(tmp, ignore_errors=True)

BENCHMARKS = Path(__file__).resolve().parent.parent/'BENCHMARKS.md'

def section_pattern(head:str)->re.Pattern:
    """The section whose heading line is exactly `head` (e.g. '## GPU'; trailing blanks allowed), up to the next heading of
    level 2 or the end: anchored at a line's start, so '## GPU' does not match a '### GPU' sub-section or a mention in
    prose (the same anchoring as `gpu_check.write_section`)."""
    return re.compile(r'^' + re.escape(head.rstrip()) + r'[ \t]*$.*?(?=^## |\Z)', re.S | re.M)

def replace_section(head:str, lines:list, path=BENCHMARKS):
    "Put the section `head` + `lines` into BENCHMARKS.md, replacing the section of that head if present (one blank line between sections)."
    path = Path(path)
    text = path.read_text() if path.exists() else '# Benchmarks\n'
    sec = '\n'.join([head, ''] + list(lines)).rstrip('\n') + '\n\n'
    pat = section_pattern(head)
    text = pat.sub(lambda m: sec, text, count=1) if pat.search(text) else text.rstrip('\n') + '\n\n' + sec
    text = re.sub(r'([^\n])\n(## )', r'\1\n\n\2', re.sub(r'\n{3,}', '\n\n', text))   # one blank line before every section
    path.write_text(text.rstrip('\n') + '\n')

def write_section(rows):
    replace_section("## Data layer (`bench/bench_data.py`)",
                    [f"Measured {time.strftime('%Y-%m-%d')} on: {machine()}. Synthetic phantom data; the study files "
                     "were just written, so they come from the page cache (a cold disk adds its read time).", '',
                     '| what | measured | target |', '|---|---|---|'] + [f"| {a} | {b} | {c} |" for a, b, c in rows])

if __name__ == '__main__':
    rows = main()
    for r in rows: print(' | '.join(r))
    if '--no-write' not in sys.argv: write_section(rows)
