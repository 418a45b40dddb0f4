"""Build a learning-rate sweep in Python, save it as YAML, run it and print each model's accuracy.

    python graphs/lr_sweep.py            # from the repository root, with plx installed

The saved graphs/lr_sweep.yaml is an ordinary graph file: `plx run graphs/lr_sweep.yaml` runs it too.
The split node is shared by every model, so it executes once (and comes from the cache after that).
"""

from plx import Graph, Operation, run

split = Operation.load("operations/tables/split_csv.yaml")
train = Operation.load("operations/ml/train_logreg.yaml")
evaluate = Operation.load("operations/ml/evaluate_classifier.yaml")

g = Graph("lr_sweep", description="Logistic regression at several learning rates on the same split")
data = g.input("data", type="csv", default="data/flowers.csv")
s = g.node("split", split, inputs={"table": data}, params={"test_ratio": 0.3, "seed": 7, "stratify": "species"})
for i, lr in enumerate((0.01, 0.1, 0.5, 1.0)):
    m = g.node(f"train_{i}", train, inputs={"train": s.train}, params={"lr": lr, "epochs": 150})
    e = g.node(f"evaluate_{i}", evaluate, inputs={"model": m.model, "test": s.test})
    g.output(f"metrics_{i}", e.metrics)
g.save("graphs/lr_sweep.yaml")

result = run(g, jobs=2)
print(f"run {result.id}: {result.status}")
for name, value in sorted(result.metrics().items()):
    if name.endswith(".accuracy"):
        print(f"  {name:<28} {value:.3f}")
