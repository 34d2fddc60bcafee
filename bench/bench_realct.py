"""covseg on real chest CT (issue 23): the three COVID-CT-MD studies of `COVSEG_REAL_CT` (default `../shared/realct`;
never in the repository) read, predicted with a trained run (default `runs/demo`: a network trained on SYNTHETIC
phantoms only) and reported; the lung field without infiltrate, with the run's prediction, with the whole body as
"infiltrate" and with a prediction that fills the pleural envelope (the worst any network can do); the quality
warnings on the three real CTs and on the run's synthetic hold-out studies (Coronacases and MosMedData layouts of
`make demo`'s data), where they should stay quiet; pictures of the slices at the heart and at the diaphragm.

Run: `.venv/bin/python bench/bench_realct.py [--run runs/demo] [--data data/synthetic] [--no-write]` (a few minutes on
2 cores; writes the section 'Real chest CT' of BENCHMARKS.md and bench/figures/realct_fields.png)."""
import argparse, contextlib, io, os, sys, tempfile, time
from pathlib import Path
import numpy as np
import pandas as pd
import pydicom
from scipy import ndimage as ndi
import matplotlib; matplotlib.use('Agg')
import matplotlib.pyplot as plt
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_data import machine, replace_section
from covseg.infer import Predictor
from covseg.clinical import predict_study, read_study
from covseg.datasets import read_coronacases, read_mosmed
from covseg.io import read_image
from covseg.lungmask import lung_mask, lung_steps, show_lungs, upsample
from covseg.volume import to_canonical, from_canonical

HEAD = "## Real chest CT (`bench/bench_realct.py`)"
STUDIES = ('P002', 'cap002', 'normal001')
QUALITY = {'median attenuation': 'soft tissue', 'one connected lesion': 'lesion > lobe',
           'outside the lung field': 'outside field', 'plausible adult range': 'lung volume',
           'reach the top': 'coverage', 'reach the bottom': 'coverage'}
FIG = Path(__file__).resolve().parent/'figures'/'realct_fields.png'

def quiet(f, *a, **k):
    "Run `f` without its progress lines on stderr."
    with contextlib.redirect_stderr(io.StringIO()): return f(*a, **k)

def tags(warnings:list)->list:
    "Short names of the quality and coverage warnings among `warnings`."
    return sorted({t for w in warnings for k, t in QUALITY.items() if k in w})

def dense_pct(v, m)->float: return float(100*(v.array[m > 0] > -300).mean())
def litres(v, m)->float: return float((m > 0).sum()*np.prod(v.spacing)/1e6)

def dense_rim(v, field, zs)->float:
    "mL of ground-glass-density tissue (-750..-150 HU) in the 5 mm outside `field` on slices `zs`, per mL of field."
    d = ndi.distance_transform_edt(field[zs] == 0, sampling=v.spacing)
    ggo = (v.array[zs] > -750) & (v.array[zs] < -150)
    return float((ggo & (d > 0) & (d <= 5)).sum()/(field[zs] > 0).sum())

def real_rows(pr, real:Path, out:Path)->tuple:
    "One row per real CT, and the volumes for the figure."
    labels = pd.read_csv(real/'slice_labels.csv')
    rows, views = [], {}
    for name in STUDIES:
        t0 = time.perf_counter()
        res = quiet(predict_study, pr, real/name, out/name, overwrite=True)
        secs = time.perf_counter() - t0
        v = quiet(read_study, real/name)
        field, mask = read_image(res['lungs']).array, read_image(res['mask']).array
        plain = quiet(lung_mask, v).array
        body = quiet(lung_mask, v, infiltrate=np.ones(v.shape, bool)).array
        st = lung_steps(v)
        env = from_canonical(upsample(st.envelope, st.f, st.hu.shape), v.geometry.direction) > 0
        worst = quiet(lung_mask, v, infiltrate=env).array
        infected = set(labels[(labels.study == name) & (labels.infection == 1)].instance_number)
        inst = [int(pydicom.dcmread(f, stop_before_pixels=True).InstanceNumber) for f in v.meta['files']]
        zs = [k for k, i in enumerate(inst) if i in infected] or list(range(v.shape[0]))
        rows.append(dict(study=name, slices=v.shape[0], plain_L=litres(v, plain), plain_dense=dense_pct(v, plain),
                         field_L=litres(v, field), field_dense=dense_pct(v, field), body_L=litres(v, body),
                         worst_L=litres(v, worst),
                         worst_dense=dense_pct(v, worst), rim=dense_rim(v, plain, zs), infected_slices=len(infected),
                         infiltrate_ml=res['infiltrate_ml'], outside_ml=res['outside_lung_ml'],
                         percent=res['percent_lungs'], score=res['score'], median_hu=res['infiltrate_median_hu'],
                         largest_ml=res['largest_lesion_ml'], warnings=', '.join(tags(res['warnings'])) or '—',
                         seg='yes' if 'seg' in res else 'no (identifiers)', seconds=secs))
        views[name] = (v, field, mask)
    return pd.DataFrame(rows), views

def holdout_rows(pr, data:Path, out:Path)->pd.DataFrame:
    "The quality warnings the run's predictions raise on the synthetic hold-out studies."
    cases = read_coronacases(data/'coronacases')[0] + read_mosmed(data/'mosmed')[0]
    rows = []
    for c in cases:
        res = quiet(predict_study, pr, c.image, out/'holdout'/f"{c.dataset}_{c.case_id}", overwrite=True)
        rows.append(dict(dataset=c.dataset, case=c.case_id, outside_ml=res['outside_lung_ml'],
                         median_hu=res['infiltrate_median_hu'], largest_ml=res['largest_lesion_ml'],
                         warnings=tags(res['warnings'])))
    return pd.DataFrame(rows)

def figure(views:dict, path:Path):
    "Slices at the heart and at the diaphragm of each real CT: the lung field (blue/orange) and the prediction (red)."
    fig, axs = plt.subplots(2, len(views), figsize=(3.4*len(views), 7))
    for j, (name, (v, field, mask)) in enumerate(views.items()):
        zs = np.flatnonzero(to_canonical(field > 0, v.geometry.direction).any((1, 2)))
        for i, (q, level) in enumerate(((0.35, 'heart'), (0.08, 'diaphragm'))):
            z = int(zs[0] + q*(zs[-1] - zs[0]))
            show_lungs(v, field, z, axs[i, j], infiltrate=mask, title=f"{name}: {level}")
    fig.suptitle("Real CT (COVID-CT-MD). Lung field: blue (left) / orange (right); red: the demo network's prediction "
                 "(trained on SYNTHETIC phantoms only)", fontsize=9)
    fig.tight_layout(); path.parent.mkdir(parents=True, exist_ok=True); fig.savefig(path, dpi=80); plt.close(fig)

def write(df:pd.DataFrame, ho:pd.DataFrame, run:Path):
    n_ho = ho.groupby('dataset').size().to_dict()
    fired = ho.explode('warnings').dropna(subset=['warnings']).groupby('warnings').size().to_dict()
    f = lambda x, p=1: '—' if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{p}f}"
    lines = [f"Measured {time.strftime('%Y-%m-%d')} on: {machine()}. The three real chest CTs of COVID-CT-MD's sample "
             "(Afshar et al., Sci Data 2021, CC BY 4.0; in this workplace at `../shared/realct`, not in the repository): "
             "P002 (COVID-19), cap002 (community-acquired pneumonia), normal001 (no pneumonia), Siemens, 2 mm slices. "
             f"Predicted with `{run}` — **a network trained on SYNTHETIC phantoms only** (`make demo`): its infiltrate "
             "on real anatomy is false positives (heart, liver, muscle), which is what these rows test the lung field "
             "and the warnings against; they are not results of the paper or of covseg on real disease.", '',
             "Lung field: *plain* without infiltrate, *with prediction* as `covseg predict --report` makes it, *whole "
             "body* with every voxel as \"infiltrate\" (one lesion lying mostly outside the lungs: nothing joins), "
             "*envelope* with a prediction that fills each lung's pleural envelope (the most any network can add). Dense: % of the field's voxels "
             "denser than -300 HU (targets: field 3-7.5 L; normal001 ≤ 10 %). Rim: mL of ground-glass-density tissue "
             "(-750 to -150 HU) in the 5 mm outside the plain field, per mL of field, on the slices the dataset's "
             "radiologists mark infected (all slices for normal001): dense lung cut out of the field would raise it "
             "above the normal chest's partial-volume border.", '',
             '| study | plain field | with prediction | whole body | envelope | rim | infiltrate predicted | outside the field | '
             'involved (score) | median HU | largest lesion | warnings | DICOM SEG | seconds |',
             '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|']
    for r in df.itertuples():
        lines.append(f"| {r.study} | {r.plain_L:.2f} L ({r.plain_dense:.1f} % dense) | {r.field_L:.2f} L "
                     f"({r.field_dense:.1f} %) | {r.body_L:.2f} L | {r.worst_L:.2f} L ({r.worst_dense:.1f} %) | {r.rim:.3f} | "
                     f"{r.infiltrate_ml:.0f} mL | {r.outside_ml:.0f} mL | {f(r.percent)} % ({r.score}/10) | "
                     f"{f(r.median_hu, 0)} | {r.largest_ml/1000:.2f} L | {r.warnings} | {r.seg} | {r.seconds:.0f} |")
    lines += ['', "Before the pleural envelope (issue 23) the same demo run's false positives grew the lungs over the heart "
                  "and the liver and were counted as disease, with no warning. Every number here is made with a "
                  "synthetic-trained network, "
                  "and every output it wrote says so (result JSON, page banner, SEG content label `COVSEG_SYNTHETIC`).", '',
              f"Quality warnings on the run's synthetic hold-out studies ({', '.join(f'{k} {v}' for k, v in n_ho.items())}"
              f"; **synthetic data**): " + (', '.join(f"{k}: {v} studies" for k, v in fired.items()) or 'none fired') +
              f". Largest infiltrate outside the field {ho.outside_ml.max():.1f} mL; highest median "
              f"{ho.median_hu.max():.0f} HU; largest lesion {ho.largest_ml.max()/1000:.2f} L.", '',
              f"![Real CT: lung fields and the synthetic-trained network's prediction](bench/figures/{FIG.name})"]
    replace_section(HEAD, lines)

if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    ap.add_argument('--run', default='runs/demo'); ap.add_argument('--data', default='data/synthetic')
    ap.add_argument('--real', default=os.environ.get('COVSEG_REAL_CT') or '../shared/realct')
    ap.add_argument('--no-write', action='store_true')
    a = ap.parse_args()
    pr = Predictor.from_run(a.run, device='cpu')
    out = Path(tempfile.mkdtemp(prefix='covseg-realct-'))
    df, views = real_rows(pr, Path(a.real), out)
    print(df.round(3).to_string())
    ho = holdout_rows(pr, Path(a.data), out)
    print(ho.to_string())
    figure(views, FIG)
    if not a.no_write: write(df, ho, Path(a.run))
