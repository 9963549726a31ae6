"""Settings of every test process (pytest-xdist runs several at once, see pytest.ini)."""
import os

# Several test processes may share one GPU: TensorFlow would otherwise reserve nearly all of its memory in
# the first process that touches it.  Set before any test imports TensorFlow; a user's own value is kept.
os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")

# Files whose tests start processes of their own (runs killed and resumed, sweep workers, whole scripts):
# they take most of the suite's time, so they start first and the test processes finish together.
SLOW_FIRST = ("tests/runs/test_workers.py", "tests/runs/test_faults.py", "tests/runs/test_pipeline.py",
              "tests/cli/test_scripts.py")


def pytest_collection_modifyitems(config, items):
    def rank(item):
        path = item.nodeid.split("::")[0]
        return SLOW_FIRST.index(path) if path in SLOW_FIRST else len(SLOW_FIRST)
    items.sort(key=rank)                  # stable: each file's tests keep their order
