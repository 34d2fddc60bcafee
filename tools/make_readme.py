"""Write README.md from the markdown cells of nbs/index.ipynb (nbdev-readme needs Quarto, which not every machine has).
Links to notebooks (`[10_model](10_model.ipynb)`, relative to nbs/ as the docs site needs them) point into nbs/."""
import json, re, sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent
nb = json.loads((root/'nbs'/'index.ipynb').read_text())
md = '\n\n'.join(''.join(c['source']).strip() for c in nb['cells'] if c['cell_type'] == 'markdown')
md = re.sub(r'\]\((\d\d_\w+\.ipynb)\)', r'](nbs/\1)', md)
text = '<!-- generated from nbs/index.ipynb by tools/make_readme.py: edit the notebook, not this file -->\n\n' + md + '\n'
out = root/'README.md'
if '--check' in sys.argv:
    if not out.exists() or out.read_text() != text: sys.exit('README.md differs from nbs/index.ipynb: run `python tools/make_readme.py`')
else: out.write_text(text)
