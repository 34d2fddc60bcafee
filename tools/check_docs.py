"""Docs checks CI can run without Quarto (which cannot be installed everywhere).

1. `nbdev-proc-nbs` (run in-process, exactly as the command does, except that nbdev's Quarto auto-install
   -- curl + sudo dpkg -- is switched off): every notebook must process. Processing executes the cells
   marked `#| exec_doc` (and exports and imports), so the processed notebooks in `_proc/` hold the outputs
   Quarto would publish, the HTML viewers of `nbs/31_viewer.ipynb` among them.
2. The Quarto configuration must not drop cell outputs (`output: false` / `include: false` at site level).
3. Every processed notebook is rendered to HTML with nbconvert (no execution).
4. The hand-written sidebar (`nbs/sidebar.yml`, `custom_sidebar = true`) and the front page's notebook table must
   each name every notebook exactly once, the table as a link.
5. Every rendered page that holds covseg viewers is loaded in headless Chromium and every viewer is worked
   (slider, overlay toggles, window, display mode: each must change the picture; no JavaScript errors),
   and the viewer notebook must hold at least one viewer.

Exits non-zero with a message naming each failure.  Usage: python tools/check_docs.py [--keep DIR]
"""
import argparse, re, shutil, sys, tempfile, time, traceback
from pathlib import Path

root = Path(__file__).resolve().parent.parent
VIEWER_NB = '31_viewer.ipynb'
GENERATED = ('sidebar.yml', 'nbdev.yml', '_quarto.yml')   # files in nbs/ that nbdev-proc-nbs may rewrite


def _short(e:BaseException)->str:
    "First and last line of an error (nbdev's include the whole cell source)."
    lines = [l for l in str(e).strip().splitlines() if l.strip()] or [type(e).__name__]
    return lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}"


def proc_nbs(failures:list, notes:list):
    "nbdev-proc-nbs on all notebooks (fresh `_proc/`), leaving the tracked files in nbs/ as they were."
    import nbdev.quarto as nq
    nq._ensure_quarto = lambda: None      # nbdev would otherwise try to download and sudo-install Quarto
    nbs = root/'nbs'
    before = {n: (nbs/n).read_bytes() for n in GENERATED if (nbs/n).exists()}
    try:
        try: nq.nbdev_proc_nbs.__wrapped__(force=True)
        except BaseException as e:        # a notebook's error (the others are cancelled), or sys.exit from nbdev
            failures.append(f"nbdev-proc-nbs failed: {_short(e)}")
            # process the notebooks it left out one at a time, to name every failing one and check the rest
            for nb in sorted(nbs.glob('[!_.]*.ipynb')):
                if (root/'_proc'/nb.name).exists(): continue
                try: nq.nbdev_proc_nbs.__wrapped__(file_glob=nb.name)
                except BaseException as e2: failures.append(f"  {nb.name} does not process: {_short(e2)}")
    finally:
        for n, b in before.items():
            if (nbs/n).read_bytes() != b:
                (nbs/n).write_bytes(b)
                notes.append(f"nbdev-proc-nbs (forced) rewrote nbs/{n}; restored the committed version")


def check_quarto_config(failures:list):
    "Site-level settings that would drop the viewers' HTML outputs."
    import yaml
    for n in ('_quarto.yml', 'nbdev.yml'):
        p = root/'nbs'/n
        if not p.exists(): failures.append(f"nbs/{n} is missing"); continue
        cfg = yaml.safe_load(p.read_text()) or {}
        html_fmt = (cfg.get('format') or {}).get('html') or {}
        for where, d in (('execute', cfg.get('execute') or {}), ('format.html', html_fmt if isinstance(html_fmt, dict) else {})):
            for k in ('output', 'include'):
                if d.get(k) is False: failures.append(f"nbs/{n}: {where}.{k}: false drops every cell output, the HTML viewers too")


def check_navigation(failures:list):
    "Every notebook once in the sidebar and once, linked, in the front page's notebook table."
    import json, yaml
    nbs = root/'nbs'
    names = sorted(p.name for p in nbs.glob('[!_.]*.ipynb'))
    def walk(items):
        for it in items or []:
            if isinstance(it, str): yield it
            elif isinstance(it, dict): yield from walk(it.get('contents'))
    side = list(walk(((yaml.safe_load((nbs/'sidebar.yml').read_text()) or {}).get('website') or {}).get('sidebar', {}).get('contents')))
    for n in names:
        if side.count(n) != 1: failures.append(f"nbs/sidebar.yml lists {n} {side.count(n)} times (once expected)")
    for n in sorted(set(side) - set(names)): failures.append(f"nbs/sidebar.yml lists {n}, which is not a notebook in nbs/")
    index = '\n'.join(''.join(c['source']) for c in json.loads((nbs/'index.ipynb').read_text())['cells'])
    for n in names:
        if n != 'index.ipynb' and index.count(f"| [{n[:-6]}]({n}) |") != 1:
            failures.append(f"nbs/index.ipynb: the notebook table has no linked row for {n} ('| [{n[:-6]}]({n}) |')")


def _html_of(output)->str:
    h = output.get('data', {}).get('text/html', '')
    return h if isinstance(h, str) else ''.join(h)


def render(out:Path, failures:list)->dict:
    "Render each processed notebook to HTML with nbconvert; return {notebook name: number of viewers in it}."
    import nbformat
    from nbconvert import HTMLExporter
    exp = HTMLExporter(template_name='lab')
    viewers = {}
    for nb_path in sorted((root/'_proc').glob('*.ipynb')):
        try:
            nb = nbformat.read(nb_path, as_version=4)
            for c in nb.cells: c.metadata.pop('execution', None)   # nbdev's timing metadata is not valid nbformat
            body, _ = exp.from_notebook_node(nb)
            (out/nb_path.with_suffix('.html').name).write_text(body, encoding='utf-8')
        except Exception as e:
            failures.append(f"nbconvert could not render _proc/{nb_path.name}: {type(e).__name__}: {e}"); continue
        n = sum(_html_of(o).count('class="covseg-viewer"') for c in nb.cells if c.cell_type == 'code' for o in c.get('outputs', []))
        if n: viewers[nb_path.name] = n
    return viewers


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--keep', help='write the rendered HTML pages to this folder and keep them')
    args = ap.parse_args()
    t0, failures, notes = time.time(), [], []
    proc_nbs(failures, notes)
    t_proc = time.time() - t0
    check_quarto_config(failures)
    check_navigation(failures)
    out = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix='covseg-docs-'))
    out.mkdir(parents=True, exist_ok=True)
    try:
        if not (root/'_proc').exists(): failures.append("_proc/ was not created")
        else:
            t1 = time.time()
            viewers = render(out, failures)
            t_render = time.time() - t1
            if not (root/'_proc'/VIEWER_NB).exists(): failures.append(f"_proc/{VIEWER_NB} is missing: the viewer notebook was not processed")
            elif VIEWER_NB not in viewers: failures.append(f"_proc/{VIEWER_NB} holds no HTML viewer output: its `#| exec_doc` cells did not display one")
            t2 = time.time()
            if viewers:
                from browser import check_in_browser     # tools/browser.py: this script's folder is on sys.path
                for name, n in viewers.items():
                    page = out/Path(name).with_suffix('.html').name
                    if not page.exists(): continue
                    try:
                        res = check_in_browser(page, min_viewers=n)
                        print(f"{name}: {res['viewers']} viewer(s) work in headless Chromium ({len(res['actions'])} actions, {res['seconds']:.1f} s)")
                    except Exception as e: failures.append(f"{name}: the HTML viewer does not work in the browser: {e}")
            print(f"timings: nbdev-proc-nbs {t_proc:.1f} s, nbconvert {t_render:.1f} s, browser {time.time() - t2:.1f} s, total {time.time() - t0:.1f} s")
    finally:
        if not args.keep: shutil.rmtree(out, ignore_errors=True)
    for n in notes: print('note:', n)
    if failures:
        print('\ndocs check FAILED:', *[f'  - {f}' for f in failures], sep='\n', file=sys.stderr)
        sys.exit(1)
    print('docs check passed')


if __name__ == '__main__': main()   # nbdev-proc-nbs spawns worker processes, which import this file again
