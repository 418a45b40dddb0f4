"""Writes data/flowers.csv: a synthetic, iris-like data set (seeded, so the file is reproducible).

Three species, four measurements each, drawn from per-species normal distributions
whose means and spreads follow Fisher's iris data. Run: python data/generate_flowers.py
"""

import csv
import random
from pathlib import Path

SPECIES = {
    "setosa": ((5.01, 0.35), (3.43, 0.38), (1.46, 0.17), (0.25, 0.11)),
    "versicolor": ((5.94, 0.52), (2.77, 0.31), (4.26, 0.47), (1.33, 0.20)),
    "virginica": ((6.59, 0.64), (2.97, 0.32), (5.55, 0.55), (2.03, 0.27)),
}

rng = random.Random(1936)
rows = []
for species, dists in SPECIES.items():
    for _ in range(60):
        rows.append([f"{max(0.1, rng.gauss(m, s)):.1f}" for m, s in dists] + [species])
rng.shuffle(rows)
out = Path(__file__).with_name("flowers.csv")
with open(out, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["sepal_length", "sepal_width", "petal_length", "petal_width", "species"])
    w.writerows(rows)
print(f"wrote {out} ({len(rows)} rows)")
