"""Run every benchmark and print its tables: python bench/run_all.py (or `make bench`)."""

import subprocess
import sys
from pathlib import Path

here = Path(__file__).parent
for script in ("startup.py", "wide.py", "hashing.py", "history.py", "fanout.py", "tracking.py", "remote.py"):
    print(f"\n# bench/{script}", flush=True)
    subprocess.run([sys.executable, str(here / script)], check=True)
