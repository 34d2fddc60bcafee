"""Execute the notebooks for the documentation site: `make docs` (the demo run must exist; the Makefile makes it first).

Every notebook is copied from `nbs/` to `_exec/nbs/` (with the site's configuration) and executed there, each in a fresh
process, two at a time, as `nbdev-test` executes it (`IN_TEST=1`, the same flags skipped), plus the cells flagged
`demo`, which show the `make demo` run (`COVSEG_DEMO_RUN`, `COVSEG_DEMO_CACHE`; synthetic data). The training chapter
(`21_train_stages`) runs as a user runs it, on the demo run with the demo profile (`COVSEG_PROFILE=demo`,
`COVSEG_RESUME=1`): its stages are finished, so it shows the learning-rate finder, batches, logs, curves and results
without training again. Notebooks whose execution is a long machinery test (`REFERENCE_ONLY`) are copied unexecuted.

Under each notebook's title a line says what its outputs were made from (commit, profile, data). A failing notebook is
named with the failing cell; the others still run, and the command exits non-zero. Cells that are mostly checks (at
least three assertion lines, at least half the cell) are folded on the page (Quarto's `code-fold`), so that the short
examples that teach stand out; the notebooks in `nbs/` are unchanged. The site is then rendered from
`_exec/nbs/`: here by `tools/check_docs.py --nbs _exec/nbs --reader` (nbconvert, headless Chromium), on GitHub by
`nbdev-docs --path _exec/nbs` (Quarto).

Usage: python tools/make_docs.py [--run runs/demo] [--cache cache/demo] [--only 34_evaluate,35_report] [--workers 2]
"""
import argparse, json, os, re, shutil, subprocess, sys, tempfile, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

root = Path(__file__).resolve().parent.parent
OUT = root/'_exec'/'nbs'
SKIP_FLAGS = ('notest', 'cuda', 'data', 'slow', 'net')     # as plain `nbdev-test`
FORCE_FLAGS = ('demo',)                                    # the cells that show the demo run
AS_USER = {'21_train_stages'}                              # run as a user runs them, on the demo run (not IN_TEST)
LONG = {'07_download', '31_infer', '33_lungmask', '34_evaluate', '35_report'}   # started first after those (about a minute each)
# Pages whose execution is a long test of machinery (two processes, the CLI end to end, the GPU check's rehearsal):
# their outputs are made by the tests, not shown on the site; the page is their prose and API. (20_train, which reads
# the cached smoke run since issue 24, is executed: its batch fit, smoke-run log and curves are on its page.)
REFERENCE_ONLY = {'90_cli', '91_ddp', '92_gpu_check'}
STAMP_ID = 'outputs-stamp'
CELL_TIMEOUT = 600


def git(*args)->str:
    return subprocess.run(['git', *args], cwd=root, capture_output=True, text=True).stdout.strip()


def stamp_text(run:Path)->str:
    "The line under each title: what the page's outputs were made from."
    commit = git('rev-parse', '--short', 'HEAD') or 'unknown'
    if git('status', '--porcelain', '--', 'nbs', 'covseg'): commit += ' with uncommitted changes'
    cfg = json.loads((run/'config.json').read_text())
    data = json.loads((run/'data.json').read_text()) if (run/'data.json').exists() else {}
    profile = cfg.get('profile') or 'demo'
    kind = 'synthetic phantoms' if data.get('synthetic', True) else 'real CT'
    return (f"*Outputs made by `make docs` at commit `{commit}`: the examples run on **synthetic** data as the tests "
            f"run them; figures of a trained model come from the `{profile}` profile's demo run on {kind} — "
            f"a check of the pipeline, not the paper's result.*")


def add_stamp(nb:dict, text:str):
    "Insert the stamp as a markdown cell right after the title cell."
    cells = nb['cells']
    cells[:] = [c for c in cells if c.get('id') != STAMP_ID]
    i = next((i for i, c in enumerate(cells) if c['cell_type'] == 'markdown' and ''.join(c['source']).lstrip().startswith('# ')), -1)
    cells.insert(i + 1, dict(cell_type='markdown', id=STAMP_ID, metadata={}, source=text))


ASSERTION = re.compile(r'^\s*(assert\b|test_\w+\(|(for|if) .*: *(assert\b|test_\w+\())')


def is_check(src:str)->bool:
    "A code cell that is mostly checks: at least 3 lines of assertions, at least half its lines."
    if re.match(r'#\|\s*(hide|export|exporti)\b', src): return False
    lines = [l for l in src.splitlines() if l.strip() and not l.startswith('#|')]
    n = sum(bool(ASSERTION.match(l)) for l in lines)
    return n >= 3 and n >= len(lines) / 2


def fold_checks(nb:dict)->int:
    "Fold the cells that are mostly checks on the page (Quarto's code-fold), so the examples that teach stand out."
    n = 0
    for c in nb['cells']:
        s = ''.join(c['source'])
        if c['cell_type'] == 'code' and is_check(s):
            k = sum(bool(ASSERTION.match(l)) for l in s.splitlines())
            c['source'] = f'#| code-fold: true\n#| code-summary: "checks ({k} assertions)"\n' + s; n += 1
    return n


ADDRESS = re.compile(r' at 0x[0-9a-f]+>')
TMP = re.compile(re.escape(tempfile.gettempdir()) + r'/tmp[\w-]+')


def sanitise(text:str)->str:
    "An output as a reader may see it: no path of this machine (the project's folder, temporary folders), the same on every run."
    text = text.replace(str(root) + '/.venv/lib/', '.../').replace(str(root) + '/', '').replace(str(root), '.')
    return TMP.sub('<tmp>', text)


def clean_output(o:dict)->dict:
    ("`sanitise` the texts of an output (stream text, text/* data; images are left alone); drop live-widget outputs (a "
     "static page cannot run them, and their model ids are random) and objects' memory addresses.")
    if 'application/vnd.jupyter.widget-view+json' in o.get('data', {}): return None
    j = lambda t: ADDRESS.sub('>', sanitise(t)) if isinstance(t, str) else [ADDRESS.sub('>', sanitise(x)) for x in t]
    if 'text' in o: o['text'] = j(o['text'])
    for k in list(o.get('data', {})):
        if k.startswith('text/'): o['data'][k] = j(o['data'][k])
    return o


def run_one(path:Path, user:bool)->int:
    "Execute one notebook in place (this process); print the failing cell; return an exit status."
    from execnb.shell import CaptureShell
    from nbdev.process import NBProcessor
    from nbdev.test import _skip_cell
    if not user: os.environ['IN_TEST'] = '1'
    nb = NBProcessor(path, rm_directives=False, process=True).nb
    skip = _skip_cell(nb, list(SKIP_FLAGS), list(FORCE_FLAGS))
    shell = CaptureShell(path, mpl_format='png')   # pictures at screen resolution (execnb's default is 'retina', 2x)
    # deprecation notices of the libraries (torch, fastai) are not the page's content
    shell.run("import warnings as _w; _w.filterwarnings('ignore', category=FutureWarning); "
              "_w.filterwarnings('ignore', category=DeprecationWarning)")
    failed = None
    os.chdir(path.parent)
    took = {}
    def timed(cell): took[cell.id] = cell.metadata['execution']['total']
    try: shell.run_all(nb, exc_stop=True, preproc=skip, postproc=timed, cell_timeout=CELL_TIMEOUT)
    except BaseException:
        failed = next((c for c in nb.cells if c.cell_type == 'code' and any(o.get('output_type') == 'error' for o in c.get('outputs', []))), None)
        print(f"{path.name}: cell {getattr(failed, 'id', '?')} failed:\n{shell.prettytb(fname=path)}", file=sys.stderr)
    raw = json.loads(path.read_text())
    by_id = {c.id: c for c in nb.cells if c.cell_type == 'code'}
    for c in raw['cells']:
        if c['cell_type'] != 'code': continue
        done = by_id.get(c.get('id'))
        outs = [clean_output(json.loads(json.dumps(o))) for o in (done.get('outputs') or [])] if done is not None else []
        c['outputs'] = [o for o in outs if o is not None]
        c['execution_count'] = None
        c.get('metadata', {}).pop('execution', None)
    slow = sorted(((t, i) for i, t in took.items() if t >= 20), reverse=True)[:3]
    if slow: print('slowest cells: ' + ', '.join(f'{i} {t:.0f} s' for t, i in slow))
    tmp = path.with_suffix('.tmp')
    tmp.write_text(json.dumps(raw, indent=1, ensure_ascii=False) + '\n')
    tmp.replace(path)
    return 1 if failed is not None or shell.exc is not None else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--run', default='runs/demo'); ap.add_argument('--cache', default='cache/demo')
    ap.add_argument('--only', default='', help='comma-separated notebook names (default: all)')
    ap.add_argument('--workers', type=int, default=2)
    ap.add_argument('--one', help=argparse.SUPPRESS); ap.add_argument('--user', action='store_true', help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one: sys.exit(run_one(Path(a.one).resolve(), a.user))
    run, cache = (root/a.run).resolve(), (root/a.cache).resolve()
    if not (run/'stage2'/'best.pth').is_file() or not (run/'eval'/'cases.csv').is_file():
        sys.exit(f"{run}: no evaluated demo run; `make demo` makes it (make docs runs it first when it is missing)")
    only = {n.strip().removesuffix('.ipynb') for n in a.only.split(',') if n.strip()}
    if OUT.exists() and not only: shutil.rmtree(OUT)
    OUT.mkdir(parents=True, exist_ok=True)
    for p in (root/'nbs').iterdir():
        if p.is_file() and (not only or p.suffix != '.ipynb' or p.stem in only or not (OUT/p.name).exists()):
            shutil.copy2(p, OUT/p.name)
    text = stamp_text(run)
    names = sorted(p.stem for p in OUT.glob('[!_.]*.ipynb') if not only or p.stem in only)
    env = dict(os.environ, COVSEG_DEMO_RUN=str(run), COVSEG_DEMO_CACHE=str(cache), PYTHONHASHSEED='0')
    user_env = dict(env, COVSEG_PROFILE='demo', COVSEG_CACHE=str(cache), COVSEG_RUN=str(run), COVSEG_RESUME='1')
    user_env.pop('IN_TEST', None)
    todo = sorted((n for n in names if n not in REFERENCE_ONLY), key=lambda n: (n not in AS_USER, n not in LONG, n))
    t0, times, failed = time.time(), {}, []
    def job(n):
        t = time.time()
        r = subprocess.run([sys.executable, __file__, '--one', str(OUT/f'{n}.ipynb')] + (['--user'] if n in AS_USER else []),
                           env=user_env if n in AS_USER else env, capture_output=True, text=True)
        times[n] = time.time() - t
        note = ''.join(f'; {l}' for l in r.stdout.splitlines() if l.startswith('slowest cells:'))
        print(f"[{len(times)}/{len(todo)}] {n}: {'ok' if r.returncode == 0 else 'FAILED'} ({times[n]:.0f} s{note})", flush=True)
        if r.returncode: failed.append(n); print(r.stderr[-4000:], file=sys.stderr, flush=True)
    with ThreadPoolExecutor(max(1, a.workers)) as ex: list(ex.map(job, todo))
    for n in names:
        p = OUT/f'{n}.ipynb'; nb = json.loads(p.read_text())
        add_stamp(nb, text if n not in REFERENCE_ONLY else
                  "*This page's code is a long test of the machinery (run by `make test`); `make docs` does not execute it, "
                  "so the page shows no outputs.*")
        fold_checks(nb)
        p.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + '\n')
    slow = sorted(times.items(), key=lambda kv: -kv[1])[:5]
    print(f"executed {len(todo)} notebooks in {time.time() - t0:.0f} s (slowest: " +
          ', '.join(f'{n} {s:.0f} s' for n, s in slow) + f"); {len(names) - len(todo)} copied unexecuted: {sorted(REFERENCE_ONLY & set(names))}")
    if failed: sys.exit(f"make docs: {len(failed)} notebook(s) failed: {', '.join(sorted(failed))} (the failing cell is named above)")


if __name__ == '__main__': main()
