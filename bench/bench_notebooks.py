"""Benchmark of the notebook tests: seconds and peak memory per notebook, and its slowest cells (CPU).

Each notebook runs alone, in a fresh process, as `nbdev-test` runs it (`IN_TEST=1`; cells flagged notest, cuda, data,
net, slow and demo skipped; with `--slow` the `slow` cells run too, as `make test-slow` runs them). Memory is the peak
of the summed resident memory of the process and its children (`bench_memory.peak_rss`). One at a time, so the
figures do not depend on what else ran; `make test` runs two at a time and is therefore shorter than the sum.

Writes its section into BENCHMARKS.md with the machine, so the next slowdown is seen.

Run: `.venv/bin/python bench/bench_notebooks.py [--slow] [--only 20_train,21_train_stages]` from the repository root."""
import argparse, json, os, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_data import machine, replace_section
from bench_memory import peak_rss

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 120                                              # seconds: issue 24's ceiling for one cell in `make test`


def run_one(path:Path, out:Path, slow:bool):
    "Execute one notebook as nbdev-test does (this process); write each code cell's seconds and the status to `out`."
    from execnb.shell import CaptureShell
    from nbdev.process import NBProcessor
    from nbdev.test import _skip_cell
    os.environ['IN_TEST'] = '1'
    nb = NBProcessor(path, process=True).nb
    from nbdev.config import get_config
    skip = _skip_cell(nb, [f for f in get_config().tst_flags if not (slow and f == 'slow')], [])   # as nbdev-test
    took = {}
    shell = CaptureShell(path)
    os.chdir(path.parent)
    err = None
    try: shell.run_all(nb, exc_stop=True, preproc=skip, postproc=lambda c: took.__setitem__(c.id, c.metadata['execution']['total']))
    except BaseException:
        bad = next((c.id for c in nb.cells if any(o.get('output_type') == 'error' for o in c.get('outputs', []))), '?')
        err = f"cell {bad}:\n{shell.prettytb(fname=path)}"
    if err is None and shell.exc is not None: err = repr(shell.exc)
    out.write_text(json.dumps(dict(ok=err is None, cells=took, error=err)))


def bench(names:list, slow:bool)->list:
    "(notebook, exit ok, seconds, peak GiB, [(cell id, seconds)] slowest first) per notebook, one at a time."
    rows = []
    env_ct = ROOT.parent/'shared'/'realct'
    if env_ct.is_dir(): os.environ.setdefault('COVSEG_REAL_CT', str(env_ct))
    for i, n in enumerate(names, 1):
        with tempfile.NamedTemporaryFile(suffix='.json') as f:
            cmd = [sys.executable, __file__, '--one', str(ROOT/'nbs'/f'{n}.ipynb'), '--json', f.name] + (['--slow'] if slow else [])
            rc, s, gib = peak_rss(cmd)
            res = json.loads(Path(f.name).read_text() or '{}')
        cells = sorted(res.get('cells', {}).items(), key=lambda kv: -kv[1])
        rows.append((n, rc == 0 and res.get('ok', False), s, gib, cells))
        print(f"[{i}/{len(names)}] {n}: {'ok' if rows[-1][1] else 'FAILED'} {s:.0f} s, peak {gib:.2f} GiB; slowest cell "
              + (f"{cells[0][0]} {cells[0][1]:.0f} s" if cells else '-'), flush=True)
        if res.get('error'): print(res['error'][-3000:], file=sys.stderr, flush=True)
    return rows


def table(rows:list, slow:bool)->list:
    "The markdown lines of the section."
    tot = sum(r[2] for r in rows)
    over = [(n, c, t) for n, *_, cells in rows for c, t in cells if t > LIMIT]
    lines = [f"Measured {time.strftime('%Y-%m-%d')} on: {machine()}. Each notebook alone in a fresh process, as `nbdev-test` "
             f"runs it ({'with' if slow else 'without'} the `slow` cells); peak of the summed resident memory of the process "
             "and its children. Synthetic data (and the three real CTs of `../shared/realct` where present). "
             f"Sum of the notebooks: **{tot:.0f} s** ({tot/60:.1f} min); `make test` runs two at a time.", '',
             '| notebook | result | seconds | peak RAM | slowest cells (id: seconds) |', '|---|---|---|---|---|']
    for n, ok, s, gib, cells in rows:
        lines.append(f"| {n} | {'ok' if ok else '**failed**'} | {s:.0f} | {gib:.2f} GiB | "
                     + ', '.join(f"`{c}`: {t:.0f}" for c, t in cells[:3]) + ' |')
    lines += ['', f"Cells over {LIMIT} s: " + (', '.join(f"{n} `{c}` ({t:.0f} s)" for n, c, t in over) if over else 'none') + '.']
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--slow', action='store_true', help='run the `slow` cells too (as `make test-slow`)')
    ap.add_argument('--only', default='', help='comma-separated notebook names (default: all; the section is then not written)')
    ap.add_argument('--one', help=argparse.SUPPRESS); ap.add_argument('--json', help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one: return run_one(Path(a.one).resolve(), Path(a.json), a.slow)
    only = [n.strip().removesuffix('.ipynb') for n in a.only.split(',') if n.strip()]
    names = only or sorted(p.stem for p in (ROOT/'nbs').glob('[!_.]*.ipynb'))
    rows = bench(names, a.slow)
    lines = table(rows, a.slow)
    print('\n'.join(lines))
    if not only:
        title = 'Notebook tests, with the slow cells' if a.slow else 'Notebook tests'
        replace_section(f"## {title} (`bench/bench_notebooks.py{' --slow' if a.slow else ''}`)", lines)
    if not all(r[1] for r in rows): sys.exit('some notebooks failed: ' + ', '.join(r[0] for r in rows if not r[1]))


if __name__ == '__main__': main()
