"""Settings of every test process (pytest-xdist runs several at once, see pytest.ini)."""
import os

# Several test processes may share one GPU: TensorFlow would otherwise reserve nearly all of its memory in
# the first process that touches it.  Set before any test imports TensorFlow; a user's own value is kept.
os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
